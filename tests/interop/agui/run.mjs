// The official AG-UI client (@ag-ui/client HttpAgent) against a live axonbus gateway.
// Usage: node run.mjs <gateway base url> <bearer token>
// Prints one JSON object: per scenario, the AG-UI event types the client saw, and the facts
// the pytest side asserts on (tools offered, interrupts, final messages, state).
import { HttpAgent } from "@ag-ui/client";

const [base, token] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${token}` };
const url = `${base}/v1/agui/interop`;
const out = {};

function makeAgent(threadId) {
  return new HttpAgent({ url, headers, threadId });
}

function recorder() {
  const seen = [];
  const subscriber = {
    onEvent({ event }) {
      seen.push(event.type);
    },
  };
  return { seen, subscriber };
}

async function run(agent, params, extra = {}) {
  const { seen, subscriber } = recorder();
  let error = null;
  let result = null;
  try {
    result = await agent.runAgent(params, { ...subscriber, ...extra });
  } catch (e) {
    error = String(e && e.message ? e.message : e);
  }
  return { events: seen, error, result: result ? result.result : null };
}

const confirmTool = {
  name: "confirm",
  description: "Ask the person to confirm something",
  parameters: { type: "object", properties: { question: { type: "string" } } },
};

// 1. streamed text, a server-side tool call and state updates
{
  const agent = makeAgent("interop-text");
  agent.addMessage({ id: "u1", role: "user", content: "weather in Paris" });
  const r = await run(agent, { runId: "text-1" });
  out.text = {
    ...r,
    answer: agent.messages.filter((m) => m.role === "assistant" && m.content).map((m) => m.content),
    toolResults: agent.messages.filter((m) => m.role === "tool").map((m) => m.content),
    state: agent.state,
  };
}

// 2. a client-side tool call: the run stops on it, the client answers in the next run
{
  const agent = makeAgent("interop-client-tool");
  agent.addMessage({ id: "u1", role: "user", content: "please confirm" });
  let pending = [];
  const first = await run(
    agent,
    { runId: "client-1", tools: [confirmTool] },
    {
      onRunFinishedEvent({ pendingToolCallIds }) {
        pending = pendingToolCallIds || [];
      },
    },
  );
  const call = agent.messages.flatMap((m) => m.toolCalls || []).find((c) => c.function.name === "confirm");
  agent.addMessage({ id: "t1", role: "tool", toolCallId: call.id, content: "yes, go ahead" });
  const second = await run(agent, { runId: "client-2", tools: [confirmTool] });
  out.clientTool = {
    first,
    second,
    pending,
    callId: call.id,
    args: JSON.parse(call.function.arguments),
    answer: agent.messages.filter((m) => m.role === "assistant" && m.content).map((m) => m.content),
  };
}

// 3. interrupt (from a second client, by the axonbus extension) and resume (by the protocol)
{
  const agent = makeAgent("interop-interrupt");
  agent.addMessage({ id: "u1", role: "user", content: "slow task" });
  let other = null;
  let interrupts = [];
  const first = await run(
    agent,
    { runId: "int-1" },
    {
      onToolCallStartEvent() {
        // a second client of the same thread asks for the pause while the tool runs
        const controller = makeAgent("interop-interrupt");
        other = run(controller, { runId: "int-ctl", forwardedProps: { axonbus: { interrupt: "hold on" } } });
      },
      onRunFinishedEvent({ outcome, interrupts: found }) {
        if (outcome === "interrupt") interrupts = found;
      },
    },
  );
  const controller = await other;
  const pendingBefore = agent.pendingInterrupts.map((i) => i.id);
  const second = await run(agent, {
    runId: "int-2",
    resume: interrupts.map((i) => ({ interruptId: i.id, status: "resolved", payload: { instruction: "be brief" } })),
  });
  out.interrupt = {
    first,
    controller,
    second,
    interrupts,
    pendingBefore,
    pendingAfter: agent.pendingInterrupts.map((i) => i.id),
    answer: agent.messages.filter((m) => m.role === "assistant" && m.content).map((m) => m.content),
  };
}

// 4. cancel: the client aborts the run mid-stream; the gateway cancels the agent's run
{
  const agent = makeAgent("interop-cancel");
  agent.addMessage({ id: "u1", role: "user", content: "slow task" });
  const r = await run(agent, { runId: "cancel-1" }, {
    onToolCallStartEvent() {
      agent.abortRun();
    },
  });
  let status = null;
  for (let i = 0; i < 100 && status !== "cancelled"; i++) {
    const res = await fetch(`${base}/v1/sessions/interop-cancel`, { headers });
    if (res.ok) status = (await res.json()).status;
    if (status !== "cancelled") await new Promise((ok) => setTimeout(ok, 100));
  }
  out.cancel = { ...r, status };
}

console.log(JSON.stringify(out));
