// A Node.js peer of an axonbus bus, written with the official clients (nats, redis, amqplib)
// and the CloudEvents SDK: it receives the bus's events, publishes its own, and (on NATS and
// RabbitMQ) calls an axonbus responder and answers axonbus requests. Driven by
// tests/interop/test_node.py.
//
//   node interop.mjs nats|redis|amqp URL BUS EXPECTED
//
// It prints one JSON object per line: {"ready": true} once subscribed, {"received": [...]}
// after EXPECTED events of the bus arrived (each checked by the SDK), then {"reply": ...} for
// its request and {"published": true}; it answers requests until its stdin closes.
import amqplib from "amqplib";
import { CloudEvent, HTTP } from "cloudevents";
import { connect, headers as natsHeaders, StringCodec } from "nats";
import { createClient } from "redis";

const [broker, url, bus, expectedText] = process.argv.slice(2);
const expected = Number(expectedText);
const sc = StringCodec();
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (err) => {
  say({ error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
};
setTimeout(() => fail("timed out"), 60_000).unref();

// what the test compares: the attributes and data the SDK read (it throws on an invalid event)
function describe(event) {
  event.validate();
  const { data, data_base64, ...attributes } = event.toJSON();
  return { ...attributes, data: data ?? null };
}

function nodeEvent(type, data, more = {}) {
  return new CloudEvent({
    type,
    source: "/node/interop",
    subject: "interop.from_node",
    datacontenttype: "application/json",
    data,
    ...more,
  });
}

async function waitForStdinEnd() {
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
}

async function onNats() {
  const nc = await connect({ servers: url });
  const received = [];
  let done;
  const allReceived = new Promise((resolve) => (done = resolve));
  if (expected === 0) done();
  nc.subscribe(`${bus}.ev.interop.to_node`, {
    callback: (err, msg) => {
      if (err) fail(err);
      const hdrs = {};
      for (const key of msg.headers ? msg.headers.keys() : []) hdrs[key] = msg.headers.get(key);
      try {
        received.push(describe(HTTP.toEvent({ headers: hdrs, body: sc.decode(msg.data) })));
      } catch (e) {
        fail(e);
      }
      if (received.length === expected) done();
    },
  });
  // a responder in another language: a CloudEvent request in, a CloudEvent reply out
  nc.subscribe(`${bus}.rpc.interop.node_rpc`, {
    queue: "node",
    callback: (err, msg) => {
      if (err) fail(err);
      const hdrs = {};
      for (const key of msg.headers ? msg.headers.keys() : []) hdrs[key] = msg.headers.get(key);
      const request = HTTP.toEvent({ headers: hdrs, body: sc.decode(msg.data) });
      request.validate();
      const reply = new CloudEvent({
        type: "interop.node_reply",
        source: "/node/interop",
        datacontenttype: "application/json",
        causationid: request.id,
        data: { sum: request.data.a + request.data.b, asked: request.type },
      });
      const message = HTTP.binary(reply);
      const h = natsHeaders();
      for (const [key, value] of Object.entries(message.headers)) h.set(key, String(value));
      msg.respond(sc.encode(message.body), { headers: h });
    },
  });
  await nc.flush();
  say({ ready: true });
  await allReceived;
  say({ received });

  // binary mode, the way axonbus sends on NATS...
  const binary = HTTP.binary(
    nodeEvent("interop.order", { order: 1, item: "tea" }, { correlationid: "node-corr" }),
  );
  const h = natsHeaders();
  for (const [key, value] of Object.entries(binary.headers)) h.set(key, String(value));
  nc.publish(`${bus}.ev.interop.from_node`, sc.encode(binary.body), { headers: h });
  // ... and structured, with a type axonbus has no class for
  const structured = HTTP.structured(nodeEvent("com.example.note", { text: "from node" }));
  nc.publish(`${bus}.ev.interop.from_node`, sc.encode(structured.body));

  // a request to an axonbus responder, as a CloudEvent; the reply is one
  const request = HTTP.binary(nodeEvent("interop.order", { order: 21, item: "cake" }));
  const rh = natsHeaders();
  for (const [key, value] of Object.entries(request.headers)) rh.set(key, String(value));
  const answer = await nc.request(`${bus}.rpc.interop.py_rpc`, sc.encode(request.body), {
    timeout: 10_000,
    headers: rh,
  });
  const ah = {};
  for (const key of answer.headers ? answer.headers.keys() : []) ah[key] = answer.headers.get(key);
  say({ reply: describe(HTTP.toEvent({ headers: ah, body: sc.decode(answer.data) })) });
  await nc.flush();
  say({ published: true });
  await waitForStdinEnd();
  await nc.drain();
}

async function onRedis() {
  const client = createClient({ url });
  client.on("error", fail);
  await client.connect();
  const subscriber = client.duplicate();
  subscriber.on("error", fail);
  await subscriber.connect();
  const received = [];
  let done;
  const allReceived = new Promise((resolve) => (done = resolve));
  if (expected === 0) done();
  // structured mode: one JSON object per pub/sub message
  await subscriber.subscribe(`${bus}/interop.to_node`, (message) => {
    try {
      const headers = { "content-type": "application/cloudevents+json" };
      received.push(describe(HTTP.toEvent({ headers, body: message })));
    } catch (e) {
      fail(e);
    }
    if (received.length === expected) done();
  });
  say({ ready: true });
  await allReceived;
  say({ received });
  for (const event of [
    nodeEvent("interop.order", { order: 1, item: "tea" }, { correlationid: "node-corr" }),
    nodeEvent("com.example.note", { text: "from node" }),
  ]) {
    await client.publish(`${bus}/interop.from_node`, HTTP.structured(event).body);
  }
  say({ published: true });
  await waitForStdinEnd();
  await subscriber.quit();
  await client.quit();
}

// RabbitMQ (AMQP 0-9-1), as the CloudEvents RabbitMQ binding has it: binary mode is the
// attributes as ce- headers and datacontenttype as the content_type property; the SDK has no
// AMQP binding, so its HTTP one reads and writes the same ce- names
function amqpToEvent(msg) {
  const headers = {};
  for (const [key, value] of Object.entries(msg.properties.headers || {})) {
    headers[key] = Buffer.isBuffer(value) ? value.toString() : String(value);
  }
  if (msg.properties.contentType) headers["content-type"] = msg.properties.contentType;
  return HTTP.toEvent({ headers, body: msg.content.toString() });
}

function amqpMessage(message) {
  const headers = {};
  let contentType;
  for (const [key, value] of Object.entries(message.headers)) {
    if (key.toLowerCase() === "content-type") contentType = String(value);
    else headers[key] = String(value);
  }
  return { body: Buffer.from(message.body), options: { headers, contentType } };
}

async function onAmqp() {
  const conn = await amqplib.connect(url);
  conn.on("error", fail);
  const ch = await conn.createChannel();
  const events = `axonbus.${bus}`; // the bus's topic exchange: routing key = topic
  const rpc = `axonbus.${bus}.rpc`; // its requests' topic exchange
  const received = [];
  let done;
  const allReceived = new Promise((resolve) => (done = resolve));
  if (expected === 0) done();
  const { queue } = await ch.assertQueue("", { exclusive: true, autoDelete: true });
  await ch.bindQueue(queue, events, "interop.to_node");
  await ch.consume(
    queue,
    (msg) => {
      try {
        received.push(describe(amqpToEvent(msg)));
      } catch (e) {
        fail(e);
      }
      if (received.length === expected) done();
    },
    { noAck: true },
  );
  // a responder in another language, on the queue an axonbus responder of the pattern uses
  const responders = `axonbus.${bus}.respond.interop.node_rpc`;
  await ch.assertQueue(responders, { autoDelete: true });
  await ch.bindQueue(responders, rpc, "interop.node_rpc");
  await ch.consume(
    responders,
    (msg) => {
      const request = amqpToEvent(msg);
      request.validate();
      const reply = new CloudEvent({
        type: "interop.node_reply",
        source: "/node/interop",
        datacontenttype: "application/json",
        causationid: request.id,
        data: { sum: request.data.a + request.data.b, asked: request.type },
      });
      const { body, options } = amqpMessage(HTTP.binary(reply));
      // to RabbitMQ's direct reply-to of the requester, with its correlation id
      ch.sendToQueue(msg.properties.replyTo, body, {
        ...options,
        correlationId: msg.properties.correlationId,
      });
    },
    { noAck: true },
  );
  // replies to our own request come on the direct reply-to pseudo-queue
  const replies = new Map();
  await ch.consume(
    "amq.rabbitmq.reply-to",
    (msg) => {
      const resolve = replies.get(msg.properties.correlationId);
      if (resolve) resolve(msg);
    },
    { noAck: true },
  );
  say({ ready: true });
  await allReceived;
  say({ received });

  // binary mode, the way axonbus sends on RabbitMQ...
  const binary = amqpMessage(
    HTTP.binary(
      nodeEvent("interop.order", { order: 1, item: "tea" }, { correlationid: "node-corr" }),
    ),
  );
  ch.publish(events, "interop.from_node", binary.body, binary.options);
  // ... and structured, with a type axonbus has no class for
  const structured = amqpMessage(HTTP.structured(nodeEvent("com.example.note", { text: "from node" })));
  ch.publish(events, "interop.from_node", structured.body, structured.options);

  // a request to an axonbus responder, as a CloudEvent; the reply is one
  const request = amqpMessage(HTTP.binary(nodeEvent("interop.order", { order: 21, item: "cake" })));
  const answered = new Promise((resolve) => replies.set("node-req-1", resolve));
  ch.publish(rpc, "interop.py_rpc", request.body, {
    ...request.options,
    replyTo: "amq.rabbitmq.reply-to",
    correlationId: "node-req-1",
  });
  const answer = await answered;
  say({ reply: describe(amqpToEvent(answer)) });
  say({ published: true });
  await waitForStdinEnd();
  await ch.close();
  await conn.close();
}

const peers = { nats: onNats, redis: onRedis, amqp: onAmqp };
peers[broker]().catch(fail);
