// Every Assistants v2 method of the official `openai` npm package, one test per resource, against a live assistd.
// docs/compatibility.md names, for each method, the test here that calls it. Streaming event order has its
// own tests in assistants-stream.test.mjs.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import OpenAI, { toFile } from 'openai';

const baseURL = process.env.ASSISTD_BASE_URL;
if (!baseURL) throw new Error('ASSISTD_BASE_URL is not set (the /v1 URL of a running assistd)');
const client = new OpenAI({ baseURL, apiKey: process.env.ASSISTD_API_KEY ?? 'sk-dev', maxRetries: 0, timeout: 30_000 });
const POLL = { pollIntervalMs: 50 };
const WEATHER = {
  type: 'function',
  function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};
const CALL = '[tool: get_weather {"city": "Paris"}]';

let assistant;

before(async () => {
  assistant = await client.beta.assistants.create({ model: 'gpt-4o-mini', name: 'node-methods', tools: [WEATHER] });
});

async function all(page) {
  const items = [];
  for await (const item of page) items.push(item);
  return items;
}

async function upload(name, text) {
  return client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'assistants' });
}

async function acting(threadId) {
  const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id }, POLL);
  assert.equal(run.status, 'requires_action');
  return run;
}

function outputs(run) {
  return run.required_action.submit_tool_outputs.tool_calls.map((call) => ({ tool_call_id: call.id, output: 'sunny' }));
}

test('assistants: create, retrieve, update, list, delete', async () => {
  const made = await client.beta.assistants.create({ model: 'gpt-4o-mini', name: 'crud', metadata: { k: 'v' } });
  assert.equal((await client.beta.assistants.retrieve(made.id)).name, 'crud');
  assert.equal((await client.beta.assistants.update(made.id, { name: 'renamed' })).name, 'renamed');
  const listed = await client.beta.assistants.list({ limit: 100 });
  assert.ok(listed.data.some((a) => a.id === made.id));
  assert.deepEqual(await client.beta.assistants.delete(made.id), { id: made.id, object: 'assistant.deleted', deleted: true });
});

test('threads: create, retrieve, update, delete', async () => {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hi' }] });
  assert.equal((await client.beta.threads.retrieve(thread.id)).id, thread.id);
  assert.deepEqual((await client.beta.threads.update(thread.id, { metadata: { a: 'b' } })).metadata, { a: 'b' });
  assert.equal((await client.beta.threads.delete(thread.id)).deleted, true);
});

test('messages: create, retrieve, update, list, delete', async () => {
  const thread = await client.beta.threads.create();
  const message = await client.beta.threads.messages.create(thread.id, { role: 'user', content: 'one' });
  const got = await client.beta.threads.messages.retrieve(message.id, { thread_id: thread.id });
  assert.equal(got.content[0].text.value, 'one');
  const updated = await client.beta.threads.messages.update(message.id, { thread_id: thread.id, metadata: { x: 'y' } });
  assert.deepEqual(updated.metadata, { x: 'y' });
  assert.deepEqual((await all(client.beta.threads.messages.list(thread.id))).map((m) => m.id), [message.id]);
  assert.equal((await client.beta.threads.messages.delete(message.id, { thread_id: thread.id })).deleted, true);
});

test('runs: create, poll, retrieve, update, list; steps: list, retrieve', async () => {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hello' }] });
  const created = await client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id });
  assert.equal(created.status, 'queued');
  const run = await client.beta.threads.runs.poll(created.id, { thread_id: thread.id }, POLL);
  assert.equal(run.status, 'completed');
  assert.equal((await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id })).status, 'completed');
  const updated = await client.beta.threads.runs.update(run.id, { thread_id: thread.id, metadata: { m: '1' } });
  assert.deepEqual(updated.metadata, { m: '1' });
  assert.deepEqual((await all(client.beta.threads.runs.list(thread.id))).map((r) => r.id), [run.id]);
  const steps = await all(client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id }));
  assert.equal(steps.length, 1);
  const step = await client.beta.threads.runs.steps.retrieve(steps[0].id, { thread_id: thread.id, run_id: run.id });
  assert.equal(step.type, 'message_creation');
});

test('runs: createAndPoll, submitToolOutputs, submitToolOutputsAndPoll, cancel', async () => {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: CALL }] });
  let run = await acting(thread.id);
  run = await client.beta.threads.runs.submitToolOutputs(run.id, { thread_id: thread.id, tool_outputs: outputs(run) });
  run = await client.beta.threads.runs.poll(run.id, { thread_id: thread.id }, POLL);
  assert.equal(run.status, 'completed');

  await client.beta.threads.messages.create(thread.id, { role: 'user', content: CALL });
  run = await acting(thread.id);
  run = await client.beta.threads.runs.submitToolOutputsAndPoll(
    run.id, { thread_id: thread.id, tool_outputs: outputs(run) }, POLL);
  assert.equal(run.status, 'completed');

  await client.beta.threads.messages.create(thread.id, { role: 'user', content: CALL });
  run = await acting(thread.id);
  run = await client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
  assert.ok(['cancelling', 'cancelled'].includes(run.status), run.status);
  run = await client.beta.threads.runs.poll(run.id, { thread_id: thread.id }, POLL);
  assert.equal(run.status, 'cancelled');
});

test('runs: create with stream: true, submitToolOutputs with stream: true', async () => {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: CALL }] });
  const events = [];
  for await (const event of await client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id, stream: true })) {
    events.push(event);
  }
  assert.equal(events[0].event, 'thread.run.created');
  const acted = events.at(-1).data;
  assert.equal(acted.status, 'requires_action');
  const after = [];
  const stream = await client.beta.threads.runs.submitToolOutputs(
    acted.id, { thread_id: thread.id, tool_outputs: outputs(acted), stream: true });
  for await (const event of stream) after.push(event.event);
  assert.equal(after.at(-1), 'thread.run.completed');
});

test('runs: stream, createAndStream (deprecated), submitToolOutputsStream', async () => {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'streamed' }] });
  const run = await client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id }).finalRun();
  assert.equal(run.status, 'completed');
  await client.beta.threads.messages.create(thread.id, { role: 'user', content: CALL });
  const acted = await client.beta.threads.runs.createAndStream(thread.id, { assistant_id: assistant.id }).finalRun();
  assert.equal(acted.status, 'requires_action');
  const done = await client.beta.threads.runs.submitToolOutputsStream(
    acted.id, { thread_id: thread.id, tool_outputs: outputs(acted) }).finalRun();
  assert.equal(done.status, 'completed');
});

test('threads: createAndRun, createAndRun with stream: true, createAndRunPoll, createAndRunStream', async () => {
  const thread = { messages: [{ role: 'user', content: 'together' }] };
  const queued = await client.beta.threads.createAndRun({ assistant_id: assistant.id, thread });
  assert.equal(queued.status, 'queued');
  const names = [];
  for await (const event of await client.beta.threads.createAndRun({ assistant_id: assistant.id, thread, stream: true })) {
    names.push(event.event);
  }
  assert.deepEqual([names[0], names.at(-1)], ['thread.created', 'thread.run.completed']);
  const polled = await client.beta.threads.createAndRunPoll({ assistant_id: assistant.id, thread }, POLL);
  assert.equal(polled.status, 'completed');
  const streamed = await client.beta.threads.createAndRunStream({ assistant_id: assistant.id, thread }).finalRun();
  assert.equal(streamed.status, 'completed');
});

test('files: create, retrieve, list, content, waitForProcessing, delete', async () => {
  // `assistants` files cannot be downloaded (as on the hosted API): `user_data` ones can.
  const file = await client.files.create({ file: await toFile(Buffer.from('node bytes'), 'node.txt'), purpose: 'user_data' });
  assert.equal((await client.files.retrieve(file.id)).filename, 'node.txt');
  assert.ok((await all(client.files.list({ purpose: 'user_data' }))).some((f) => f.id === file.id));
  assert.equal(await (await client.files.content(file.id)).text(), 'node bytes');
  assert.equal((await client.files.waitForProcessing(file.id, { pollInterval: 50 })).status, 'processed');
  assert.equal((await client.files.delete(file.id)).deleted, true);
});

test('vectorStores: create, retrieve, update, list, search, delete', async () => {
  const file = await upload('otters.txt', 'Otters hold hands while they sleep.');
  const store = await client.vectorStores.create({ name: 'node', file_ids: [file.id] });
  assert.equal((await client.vectorStores.retrieve(store.id)).name, 'node');
  assert.equal((await client.vectorStores.update(store.id, { name: 'node2' })).name, 'node2');
  assert.ok((await all(client.vectorStores.list())).some((s) => s.id === store.id));
  await client.vectorStores.files.poll(store.id, file.id, POLL);
  const hits = await all(client.vectorStores.search(store.id, { query: 'otters' }));
  assert.equal(hits[0].file_id, file.id);
  assert.equal((await client.vectorStores.delete(store.id)).deleted, true);
});

test('vectorStores.files: create, poll, retrieve, update, list, content, delete, createAndPoll, upload, uploadAndPoll', async () => {
  const store = await client.vectorStores.create({ name: 'node-files' });
  const first = await upload('a.txt', 'alpha file');
  await client.vectorStores.files.create(store.id, { file_id: first.id });
  assert.equal((await client.vectorStores.files.poll(store.id, first.id, POLL)).status, 'completed');
  const got = await client.vectorStores.files.retrieve(first.id, { vector_store_id: store.id });
  assert.equal(got.id, first.id);
  const updated = await client.vectorStores.files.update(first.id, { vector_store_id: store.id, attributes: { k: 'v' } });
  assert.deepEqual(updated.attributes, { k: 'v' });
  const parts = await all(client.vectorStores.files.content(first.id, { vector_store_id: store.id }));
  assert.equal(parts.map((p) => p.text).join(''), 'alpha file');
  const second = await upload('b.txt', 'beta file');
  assert.equal((await client.vectorStores.files.createAndPoll(store.id, { file_id: second.id }, POLL)).status, 'completed');
  const uploaded = await client.vectorStores.files.upload(store.id, await toFile(Buffer.from('gamma'), 'c.txt'));
  await client.vectorStores.files.poll(store.id, uploaded.id, POLL);
  const polled = await client.vectorStores.files.uploadAndPoll(store.id, await toFile(Buffer.from('delta'), 'd.txt'), POLL);
  assert.equal(polled.status, 'completed');
  assert.equal((await all(client.vectorStores.files.list(store.id))).length, 4);
  assert.equal((await client.vectorStores.files.delete(first.id, { vector_store_id: store.id })).deleted, true);
});

test('vectorStores.fileBatches: create, poll, retrieve, listFiles, cancel, createAndPoll, uploadAndPoll', async () => {
  const store = await client.vectorStores.create({ name: 'node-batches' });
  const a = await upload('1.txt', 'one');
  const batch = await client.vectorStores.fileBatches.create(store.id, { file_ids: [a.id] });
  assert.equal((await client.vectorStores.fileBatches.poll(store.id, batch.id, POLL)).status, 'completed');
  const got = await client.vectorStores.fileBatches.retrieve(batch.id, { vector_store_id: store.id });
  assert.equal(got.file_counts.completed, 1);
  const listed = await all(client.vectorStores.fileBatches.listFiles(batch.id, { vector_store_id: store.id }));
  assert.deepEqual(listed.map((f) => f.id), [a.id]);
  const cancelled = await client.vectorStores.fileBatches.cancel(batch.id, { vector_store_id: store.id });
  assert.ok(['completed', 'cancelled'].includes(cancelled.status), cancelled.status);
  const b = await upload('2.txt', 'two');
  const polled = await client.vectorStores.fileBatches.createAndPoll(store.id, { file_ids: [b.id] }, POLL);
  assert.equal(polled.status, 'completed');
  const uploaded = await client.vectorStores.fileBatches.uploadAndPoll(
    store.id, { files: [await toFile(Buffer.from('three'), '3.txt')], fileIds: [] }, POLL);
  assert.equal(uploaded.file_counts.completed, 1);
});
