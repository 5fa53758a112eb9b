"""The SQL of the ``postgresql://`` store: the schema, every statement it prepares (table
names filled in once per bus), the table-name prefix that fits PostgreSQL's identifier limit and
the advisory lock keys. Text only: nothing here talks to the server (see ``_transport``).
"""

from __future__ import annotations

import hashlib

__all__ = ["LONG_DEAD", "REPLY_TTL", "Statements", "lock_key", "schema", "table_names"]

LONG_DEAD = 3600.0  # an instance row expired this long ago is forgotten
REPLY_TTL = 3600.0  # a reply nobody took for this long is deleted

_MAX_IDENT = 63  # PostgreSQL truncates longer identifiers
_LONGEST_SUFFIX = len("replies_requester")  # the longest table or index name suffix


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def table_names(prefix: str) -> str:
    """``prefix`` shortened (with a hash) if its table names would be truncated."""
    if len(prefix) + _LONGEST_SUFFIX <= _MAX_IDENT:
        return prefix
    keep = _MAX_IDENT - _LONGEST_SUFFIX - 10
    return prefix[:keep] + hashlib.blake2b(prefix.encode(), digest_size=4).hexdigest() + "_"


def schema(t: str) -> str:
    return f"""
CREATE SEQUENCE IF NOT EXISTS {t}seq;
CREATE TABLE IF NOT EXISTS {t}events (
    seq bigint PRIMARY KEY,
    ts double precision NOT NULL,
    topic text NOT NULL,
    event_id text NOT NULL,
    origin text NOT NULL,
    data bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}events_ts ON {t}events (ts);
CREATE INDEX IF NOT EXISTS {t}events_id ON {t}events (event_id);
CREATE TABLE IF NOT EXISTS {t}consumers (
    name text PRIMARY KEY,
    kind text NOT NULL,
    pattern text NOT NULL,
    position bigint NOT NULL,
    updated double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}pending (
    consumer text NOT NULL,
    seq bigint NOT NULL,
    attempts integer NOT NULL,
    owner text,
    visible_at double precision NOT NULL,
    PRIMARY KEY (consumer, seq)
);
CREATE INDEX IF NOT EXISTS {t}pending_owner ON {t}pending (owner, consumer);
CREATE INDEX IF NOT EXISTS {t}pending_free ON {t}pending (consumer, visible_at)
    WHERE owner IS NULL;
CREATE TABLE IF NOT EXISTS {t}dead (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    seq bigint NOT NULL,
    ts double precision NOT NULL,
    error text NOT NULL,
    data bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}instances (
    instance text PRIMARY KEY,
    expires double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}idem (
    key text PRIMARY KEY,
    event_id text NOT NULL,
    ts double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}idem_ts ON {t}idem (ts);
CREATE TABLE IF NOT EXISTS {t}responders (
    instance text NOT NULL,
    pattern text NOT NULL,
    expires double precision NOT NULL,
    PRIMARY KEY (instance, pattern)
);
CREATE TABLE IF NOT EXISTS {t}requests (
    id bigserial PRIMARY KEY,
    pattern text NOT NULL,
    requester text NOT NULL,
    request_id text NOT NULL,
    deadline double precision,
    data bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}requests_pattern ON {t}requests (pattern, id);
CREATE TABLE IF NOT EXISTS {t}replies (
    id bigserial PRIMARY KEY,
    requester text NOT NULL,
    request_id text NOT NULL,
    frame bytea NOT NULL,
    ts double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}replies_requester ON {t}replies (requester);
"""


class Statements:
    """Every statement, with the table names filled in once."""

    def __init__(self, t: str) -> None:
        # the owners of pending rows that are not alive: a skip scan of the owner index, one
        # step per distinct owner, so that finding what to reclaim does not cost a look at
        # every event in flight (a durable may have thousands)
        dead = (
            f"RECURSIVE o(owner) AS ("
            f"(SELECT owner FROM {t}pending WHERE owner IS NOT NULL ORDER BY owner LIMIT 1) "
            f"UNION ALL SELECT (SELECT p.owner FROM {t}pending p WHERE p.owner > o.owner "
            f"ORDER BY p.owner LIMIT 1) FROM o WHERE o.owner IS NOT NULL), "
            f"dead AS (SELECT o.owner FROM o WHERE o.owner IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {t}instances i WHERE i.instance = o.owner AND i.expires > $3))"
        )
        # visible pending rows of consumer $1 held by nobody ...
        free = f"{t}pending f WHERE f.consumer = $1 AND f.owner IS NULL AND f.visible_at <= $3"
        # ... or by a dead owner
        held = (
            # EXISTS first: a constant for the planner, so without a dead owner (the usual
            # case) the consumer's pending rows are not even looked at
            f"{t}pending h WHERE EXISTS (SELECT 1 FROM dead) "
            f"AND h.owner = ANY(ARRAY(SELECT owner FROM dead)) "
            f"AND h.consumer = $1 AND h.visible_at <= $3"
        )
        # a whole batch of publishes in one statement, so one round trip: the lock subquery is
        # volatile, hence not flattened, so it runs (waiting for the lock) before nextval; the
        # statement is its own transaction and holds the lock until it commits
        self.publish = (
            f"WITH n AS (SELECT setval('{t}seq', nextval('{t}seq') + $1 - 1) AS last "
            f"FROM (SELECT pg_advisory_xact_lock($2)) AS l), "
            f"ins AS (INSERT INTO {t}events (seq, ts, topic, event_id, origin, data) "
            f"SELECT n.last - $1 + u.i, u.ts, u.topic, u.event_id, $7, u.data FROM n, "
            f"unnest($3::float8[], $4::text[], $5::text[], $6::bytea[]) "
            f"WITH ORDINALITY AS u(ts, topic, event_id, data, i)) "
            f"SELECT last, pg_notify($8, '') FROM n"
        )
        self.lock = "SELECT pg_advisory_xact_lock($1)"
        self.number = f"SELECT setval('{t}seq', nextval('{t}seq') + $1 - 1)"
        self.insert_events = (
            f"INSERT INTO {t}events (seq, ts, topic, event_id, origin, data) "
            f"SELECT $1::bigint + n - 1, ts, topic, event_id, $6, data "
            f"FROM unnest($2::float8[], $3::text[], $4::text[], $5::bytea[]) "
            f"WITH ORDINALITY AS u(ts, topic, event_id, data, n)"
        )
        self.idem_find = f"SELECT key, event_id FROM {t}idem WHERE key = ANY($1) AND ts >= $2"
        self.idem_put = (
            f"INSERT INTO {t}idem (key, event_id, ts) SELECT k, e, $3 "
            f"FROM unnest($1::text[], $2::text[]) AS u(k, e) "
            f"ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts"
        )
        # by primary key (= ANY): a join with the offsets may scan every pending row
        self.ack = f"DELETE FROM {t}pending WHERE consumer = $1 AND seq = ANY($2::bigint[])"
        self.defer = (
            f"UPDATE {t}pending SET owner = NULL, visible_at = $3, "
            f"attempts = greatest(attempts, $4) WHERE consumer = $1 AND seq = $2"
        )
        self.attempt = (
            f"UPDATE {t}pending SET attempts = greatest(attempts, $3) "
            f"WHERE consumer = $1 AND seq = $2"
        )
        self.dead = (
            f"WITH d AS (DELETE FROM {t}pending WHERE consumer = $1 AND seq = $2 "
            f"RETURNING consumer, seq) "
            f"INSERT INTO {t}dead (consumer, seq, ts, error, data) "
            f"SELECT d.consumer, d.seq, $3, $4, coalesce(e.data, ''::bytea) "
            f"FROM d LEFT JOIN {t}events e ON e.seq = d.seq"
        )
        # a consumer starts after the newest committed event (an uncommitted batch with lower
        # numbers is not skipped: it commits above this position)
        self.register = (
            f"INSERT INTO {t}consumers (name, kind, pattern, position, updated) "
            f"SELECT $1, $2, $3, coalesce(max(seq), 0), $4 FROM {t}events "
            f"ON CONFLICT (name) DO NOTHING"
        )
        # only when it changed: an unconditional update would wait for a member's claim
        self.repattern = (
            f"UPDATE {t}consumers SET pattern = $3, kind = $2, updated = $4 "
            f"WHERE name = $1 AND (pattern <> $3 OR kind <> $2)"
        )
        self.respond = (
            f"INSERT INTO {t}responders (instance, pattern, expires) VALUES ($1, $2, $3) "
            f"ON CONFLICT (instance, pattern) DO UPDATE SET expires = excluded.expires"
        )
        self.unrespond = f"DELETE FROM {t}responders WHERE instance = $1 AND pattern = $2"
        self.request = (
            f"INSERT INTO {t}requests (pattern, requester, request_id, deadline, data) "
            f"VALUES ($1, $2, $3, $4, $5)"
        )
        self.reply = (
            f"INSERT INTO {t}replies (requester, request_id, frame, ts) VALUES ($1, $2, $3, $4)"
        )
        self.notify = "SELECT pg_notify($1, '')"
        self.head = f"SELECT coalesce(max(seq), 0) FROM {t}events"
        self.position = f"SELECT position FROM {t}consumers WHERE name = $1"
        self.on_topic = f"SELECT seq, data FROM {t}events WHERE topic = $1 ORDER BY seq LIMIT $2"
        self.delete_event = f"DELETE FROM {t}events WHERE seq = $1"
        self.offset_of = f"SELECT seq FROM {t}events WHERE event_id = $1 ORDER BY seq LIMIT 1"
        # cheap and read-only: an idle consumer must not write (lock a row) on every poll
        self.claim_probe = (
            # max() reads one index entry; EXISTS (... seq > position) may scan the table
            f"WITH {dead} "
            f"SELECT coalesce((SELECT max(seq) FROM {t}events) > c.position, false) "
            f"OR ($2 AND (EXISTS (SELECT 1 FROM {free}) OR EXISTS (SELECT 1 FROM {held}))) "
            f"FROM {t}consumers c WHERE c.name = $1"
        )
        # the consumer row is locked first (another member claiming: no row at all), then the
        # pending events to hand out again are locked and taken; one round trip. The update
        # goes by primary key (= ANY): a join would let the planner scan every pending row.
        self.lock_and_reclaim = (
            f"WITH {dead}, "
            f"c AS (SELECT position FROM {t}consumers WHERE name = $1 FOR UPDATE SKIP LOCKED), "
            f"fd AS (SELECT f.seq FROM {free} AND EXISTS (SELECT 1 FROM c) "
            f"ORDER BY f.visible_at LIMIT $4 FOR UPDATE OF f SKIP LOCKED), "
            f"hd AS (SELECT h.seq FROM {held} AND EXISTS (SELECT 1 FROM c) "
            f"ORDER BY h.seq LIMIT $4 FOR UPDATE OF h SKIP LOCKED), "
            f"taken AS (UPDATE {t}pending p SET owner = $2, "
            f"visible_at = $3 WHERE p.consumer = $1 AND p.seq = ANY(ARRAY("
            f"SELECT seq FROM fd UNION SELECT seq FROM hd ORDER BY 1 LIMIT $4)) "
            f"RETURNING p.seq, p.attempts) "
            f"SELECT c.position, t.seq, t.attempts, e.data FROM c "
            f"LEFT JOIN (taken t JOIN {t}events e ON e.seq = t.seq) ON true"
        )
        # a group: the row lock and the first page of events
        self.lock_and_read = (
            f"WITH c AS (SELECT position FROM {t}consumers WHERE name = $1 "
            f"FOR UPDATE SKIP LOCKED) "
            f"SELECT c.position, e.seq, e.topic, e.data FROM c LEFT JOIN LATERAL "
            f"(SELECT seq, topic, data FROM {t}events WHERE seq > c.position "
            f"ORDER BY seq LIMIT $2) AS e ON true ORDER BY e.seq"
        )
        self.claim_read = (
            f"SELECT seq, topic, data FROM {t}events WHERE seq > $1 ORDER BY seq LIMIT $2"
        )
        self.claim_save = (
            f"WITH ins AS (INSERT INTO {t}pending (consumer, seq, attempts, owner, visible_at) "
            f"SELECT $1, s, 1, $2, $3 FROM unnest($4::bigint[]) AS s) "
            f"UPDATE {t}consumers SET position = $5, updated = $3 WHERE name = $1"
        )
        self.claim_move = f"UPDATE {t}consumers SET position = $2, updated = $3 WHERE name = $1"
        self.heartbeat = (
            f"INSERT INTO {t}instances (instance, expires) VALUES ($1, $2) "
            f"ON CONFLICT (instance) DO UPDATE SET expires = excluded.expires"
        )
        self.sweep = [
            f"DELETE FROM {t}instances WHERE expires < $1 - {LONG_DEAD}",
            f"DELETE FROM {t}responders WHERE expires < $1",
            f"DELETE FROM {t}requests WHERE deadline < $1",
            f"DELETE FROM {t}replies WHERE ts < $1 - {REPLY_TTL}",
        ]
        self.release = [
            f"UPDATE {t}pending SET owner = NULL, visible_at = $2 WHERE owner = $1",
            f"DELETE FROM {t}responders WHERE instance = $1",
            f"DELETE FROM {t}instances WHERE instance = $1",
        ]
        self.responders = f"SELECT DISTINCT pattern FROM {t}responders WHERE expires > $1"
        self.take_requests = (
            f"DELETE FROM {t}requests WHERE id IN (SELECT id FROM {t}requests "
            f"WHERE pattern = ANY($1) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) "
            f"RETURNING id, pattern, requester, request_id, deadline, data"
        )
        self.take_replies = (
            f"DELETE FROM {t}replies WHERE requester = $1 RETURNING id, request_id, frame"
        )
        self.compact_lock = "SELECT pg_try_advisory_xact_lock($1)"
        self.newest_kept = f"SELECT seq FROM {t}events ORDER BY seq DESC OFFSET $1 LIMIT 1"
        self.newest_old = f"SELECT max(seq) FROM {t}events WHERE ts < $1"
        self.topics_between = (
            f"SELECT seq, topic FROM {t}events WHERE seq > $1 AND seq < $2 ORDER BY seq LIMIT $3"
        )
        # only if no claim moved it meanwhile
        self.skip_to = f"UPDATE {t}consumers SET position = $3 WHERE name = $1 AND position = $2"
        self.durables = (
            f"SELECT c.name, c.pattern, c.position, "
            f"(SELECT min(p.seq) FROM {t}pending p WHERE p.consumer = c.name) "
            f"FROM {t}consumers c WHERE c.kind = 'durable'"
        )
        # events to delete: old enough ($1 timestamp) or beyond the count ($2 offset), below $3
        expired = "(ts < $1 OR seq <= $2) AND seq < $3"
        self.delete_events = f"DELETE FROM {t}events WHERE {expired}"
        self.delete_unacked = (
            f"DELETE FROM {t}events WHERE {expired} AND seq >= $4 RETURNING seq, topic"
        )
        self.delete_lost_pending = (
            f"DELETE FROM {t}pending WHERE seq = ANY($1::bigint[]) RETURNING consumer, seq"
        )
        self.delete_idem = f"DELETE FROM {t}idem WHERE ts < $1"
        self.dead_letters = (
            f"SELECT consumer, seq, ts, error, data FROM {t}dead "
            f"WHERE $1::text IS NULL OR consumer = $1 ORDER BY id LIMIT $2"
        )
        self.read_columns = f"SELECT seq, ts, topic, event_id, origin, data FROM {t}events"
