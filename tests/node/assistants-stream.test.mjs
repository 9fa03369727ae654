// The official `openai` npm package streaming runs from a live assistd.
// ASSISTD_BASE_URL (e.g. http://127.0.0.1:8000/v1) and ASSISTD_API_KEY come from tests/test_node_sdk.py.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import OpenAI from 'openai';

const baseURL = process.env.ASSISTD_BASE_URL;
if (!baseURL) throw new Error('ASSISTD_BASE_URL is not set (the /v1 URL of a running assistd)');
const client = new OpenAI({ baseURL, apiKey: process.env.ASSISTD_API_KEY ?? 'sk-dev', maxRetries: 0, timeout: 30_000 });

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const TEXT_RUN = [
  'thread.run.created', 'thread.run.queued', 'thread.run.in_progress',
  'thread.run.step.created', 'thread.run.step.in_progress',
  'thread.message.created', 'thread.message.in_progress', 'thread.message.delta…',
  'thread.message.completed', 'thread.run.step.completed', 'thread.run.completed',
];

// Runs of delta events become one `NAME…` entry.
function collapse(names) {
  const out = [];
  for (let name of names) {
    if (name.endsWith('.delta')) {
      name += '…';
      if (out.at(-1) === name) continue;
    }
    out.push(name);
  }
  return out;
}

// Everything one AssistantStream emitted, by listener.
function record(stream) {
  const seen = { events: [], textDeltas: [], textsDone: [], callsCreated: [], argDeltas: {}, callsDone: [], ends: 0 };
  stream
    .on('event', (event) => seen.events.push(event.event))
    .on('textDelta', (delta) => seen.textDeltas.push(delta.value))
    .on('textDone', (text) => seen.textsDone.push(text.value))
    .on('toolCallCreated', (call) => seen.callsCreated.push(call))
    .on('toolCallDelta', (delta) => {
      seen.argDeltas[delta.index] = (seen.argDeltas[delta.index] ?? '') + (delta.function?.arguments ?? '');
    })
    .on('toolCallDone', (call) => seen.callsDone.push(call))
    .on('end', () => { seen.ends += 1; });
  return seen;
}

function textOf(message) {
  return message.content.filter((part) => part.type === 'text').map((part) => part.text.value).join('');
}

let assistant;

before(async () => {
  assistant = await client.beta.assistants.create({
    model: 'gpt-4o-mini', name: 'node-sdk', instructions: 'Be brief.', tools: [WEATHER],
  });
});

test('text run: textDelta reassembles the stored message, end fires once', async () => {
  const reply = 'Hello from node — “streamed” ✓ in pieces';
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: `[reply: ${reply}]` }] });
  const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
  const seen = record(stream);
  const run = await stream.finalRun();
  const messages = await stream.finalMessages();

  assert.equal(run.status, 'completed');
  assert.equal(run.thread_id, thread.id);
  assert.deepEqual(collapse(seen.events), TEXT_RUN);
  assert.ok(seen.textDeltas.length > 1, 'the reply arrives in several deltas');
  assert.equal(seen.textDeltas.join(''), reply);
  assert.deepEqual(seen.textsDone, [reply]);
  assert.equal(seen.ends, 1);
  assert.deepEqual(messages.map(textOf), [reply]);
  const stored = await client.beta.threads.messages.list(thread.id, { order: 'desc', limit: 1 });
  assert.equal(stored.data[0].id, messages[0].id);
  assert.equal(textOf(stored.data[0]), reply);
});

test('tool-call run: toolCallDelta, then submitToolOutputsStream completes the same run', async () => {
  const thread = await client.beta.threads.create({
    messages: [{ role: 'user', content: '[tool: get_weather {"city": "Paris", "unit": "°C"}] [tool: get_weather {"city": "Rome"}]' }],
  });
  const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
  const seen = record(stream);
  const run = await stream.finalRun();

  assert.equal(run.status, 'requires_action');
  assert.deepEqual(collapse(seen.events), [
    'thread.run.created', 'thread.run.queued', 'thread.run.in_progress',
    'thread.run.step.created', 'thread.run.step.in_progress', 'thread.run.step.delta…',
    'thread.run.requires_action',
  ]);
  assert.equal(seen.ends, 1);
  const required = run.required_action.submit_tool_outputs.tool_calls;
  assert.deepEqual(required.map((call) => call.function.name), ['get_weather', 'get_weather']);
  assert.deepEqual(seen.callsCreated.map((call) => call.id), required.map((call) => call.id));
  assert.deepEqual(seen.callsDone.map((call) => call.function.arguments), required.map((call) => call.function.arguments));
  assert.deepEqual(JSON.parse(required[0].function.arguments), { city: 'Paris', unit: '°C' });
  assert.deepEqual(JSON.parse(required[1].function.arguments), { city: 'Rome' });
  // The first delta of a call is reported as toolCallCreated; toolCallDelta carries the rest of it.
  assert.ok(Object.keys(seen.argDeltas).length > 0, 'toolCallDelta never fired');
  for (const [index, args] of Object.entries(seen.argDeltas)) {
    assert.ok(required[Number(index)].function.arguments.endsWith(args));
  }
  const steps = await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: 'asc' });
  assert.deepEqual(steps.data[0].step_details.tool_calls.map((call) => call.function.arguments),
    required.map((call) => call.function.arguments));

  const after = client.beta.threads.runs.submitToolOutputsStream(run.id, {
    thread_id: thread.id,
    tool_outputs: [{ tool_call_id: required[0].id, output: 'sunny' }, { tool_call_id: required[1].id, output: 'rainy' }],
  });
  const seenAfter = record(after);
  const final = await after.finalRun();
  assert.equal(final.id, run.id);
  assert.equal(final.status, 'completed');
  assert.equal(seenAfter.events[0], 'thread.run.step.completed');
  assert.equal(seenAfter.events.at(-1), 'thread.run.completed');
  assert.equal(seenAfter.textDeltas.join(''), 'tool results: sunny; rainy');
  assert.equal(seenAfter.ends, 1);
});

test('createAndRunStream: thread.created first', async () => {
  const stream = client.beta.threads.createAndRunStream({
    assistant_id: assistant.id,
    thread: { messages: [{ role: 'user', content: '[reply: new thread, streamed]' }] },
  });
  const seen = record(stream);
  const run = await stream.finalRun();
  assert.equal(run.status, 'completed');
  assert.deepEqual(collapse(seen.events), ['thread.created', ...TEXT_RUN]);
  assert.equal(seen.textDeltas.join(''), 'new thread, streamed');
  const thread = await client.beta.threads.retrieve(run.thread_id);
  assert.equal(thread.id, run.thread_id);
});

test('abort after the first textDelta: the run still completes, the message is whole', async () => {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: '[chunk-delay: 0.05] [tokens: 20]' }] });
  const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
  let runId;
  stream.on('runStepCreated', (step) => { runId = step.run_id; });
  const aborted = new Promise((resolve) => stream.on('abort', resolve));
  stream.on('textDelta', () => stream.abort());
  await assert.rejects(stream.done());
  await aborted;
  assert.ok(runId);

  let run;
  for (let i = 0; i < 150; i += 1) {
    run = await client.beta.threads.runs.retrieve(runId, { thread_id: thread.id });
    if (!['queued', 'in_progress'].includes(run.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(run.status, 'completed');
  const [message] = (await client.beta.threads.messages.list(thread.id, { order: 'desc', limit: 1 })).data;
  assert.equal(textOf(message), Array(20).fill('tok').join(' '));
});
