// Drives the Responses, Files and Batch APIs of a tpo serve instance, its
// model names as settings and its tool calls, with the official openai
// package, and checks what the package parses. Run by
// server/nodeclient_test.go:
//
//	TPO_BASE_URL=http://127.0.0.1:PORT/v1 TPO_API_KEY=KEY node api.mjs
//
// It prints one JSON object with what it saw on stdout and exits non-zero
// on the first failed check.
import OpenAI, { toFile } from 'openai';

const client = new OpenAI({
  baseURL: process.env.TPO_BASE_URL,
  apiKey: process.env.TPO_API_KEY,
  maxRetries: 0,
  timeout: 20000,
});

function check(cond, what, got) {
  if (!cond) {
    throw new Error(`${what}; got ${JSON.stringify(got)}`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = {};

// A response: the SDK's output_text joins the output's text.
const r = await client.responses.create({
  model: 'policy-model',
  instructions: 'You are terse.',
  input: 'Name a prime number.',
  temperature: 0.3,
  tpo: { width: 3, depth: 1 },
});
check(r.id.startsWith('resp_') && r.object === 'response' && r.status === 'completed', 'response header', r);
check(r.output.length === 1 && r.output[0].type === 'message' && r.output[0].content[0].type === 'output_text', 'output', r.output);
check(r.output_text.length > 0 && r.output_text === r.output[0].content[0].text, 'output_text', r.output_text);
check(r.usage.total_tokens === r.usage.input_tokens + r.usage.output_tokens && r.usage.total_tokens > 0, 'usage', r.usage);
check(r.tpo && r.tpo.width === 3 && r.tpo.depth === 1 && r.tpo.requests === 4, 'tpo summary', r.tpo);
const again = await client.responses.retrieve(r.id);
check(again.output_text === r.output_text, 'retrieved response', again);
out.response = { id: r.id, text: r.output_text, run_id: r.tpo.run_id };

// Continued with previous_response_id.
const next = await client.responses.create({ model: 'policy-model', previous_response_id: r.id, input: 'Another one.', tpo: { mode: 'bon', width: 2 } });
check(next.previous_response_id === r.id && next.output_text.length > 0, 'continued response', next);
out.continued = { id: next.id };

// Streamed: the standard events, the progress in keepalive events
// between them.
const stream = await client.responses.create({ model: 'policy-model', input: 'Name a color.', stream: true, tpo: { width: 2, depth: 2 } });
const types = [];
let deltas = '';
let completed = null;
let progress = 0;
for await (const event of stream) {
  if (types[types.length - 1] !== event.type) types.push(event.type);
  if (event.type === 'keepalive' && event.tpo) progress++;
  if (event.type === 'response.output_text.delta') deltas += event.delta;
  if (event.type === 'response.completed') completed = event.response;
}
check(types[0] === 'response.created' && types[1] === 'response.in_progress' && types[types.length - 1] === 'response.completed', 'event order', types);
check(types.indexOf('response.output_text.delta') > types.indexOf('keepalive'), 'text after progress', types);
check(progress === 9 && completed && completed.output[0].content[0].text === deltas && deltas.length > 0, 'streamed text', { progress, deltas });
out.stream = { types, progress, text: deltas };

// The stream helper accumulates the events into the response.
const helper = client.responses.stream({ model: 'policy-model', input: 'Name a fruit.', tpo: { mode: 'bon', width: 2 } });
const final = await helper.finalResponse();
check(final.status === 'completed' && final.output_text.length > 0, 'helper response', final);
out.helper = { text: final.output_text };

// In the background: queued at once, polled to completion.
let bg = await client.responses.create({ model: 'policy-model', input: 'Name a planet.', background: true, tpo: { width: 2, depth: 1 } });
check(bg.status === 'queued' && bg.background === true, 'queued', bg);
const polled = [bg.status];
while (bg.status === 'queued' || bg.status === 'in_progress') {
  await sleep(20);
  bg = await client.responses.retrieve(bg.id);
  if (polled[polled.length - 1] !== bg.status) polled.push(bg.status);
}
check(bg.status === 'completed' && bg.output_text.length > 0, 'background completed', bg);
out.background = { id: bg.id, statuses: polled, text: bg.output_text };

// One held by the server until cancelled.
let held = await client.responses.create({ model: 'policy-model', input: 'hold me', background: true });
while (held.status === 'queued') {
  await sleep(20);
  held = await client.responses.retrieve(held.id);
}
const cancelled = await client.responses.cancel(held.id);
check(cancelled.status === 'cancelled', 'cancelled', cancelled);
out.cancelled = { id: held.id, status: (await client.responses.retrieve(held.id)).status };

// A batch of 20 requests: the file, the batch, its output file.
const lines = [];
for (let i = 0; i < 20; i++) {
  lines.push(JSON.stringify({
    custom_id: `request-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'policy-model', messages: [{ role: 'user', content: `Question ${i}` }], tpo: { width: 2, depth: 1 } },
  }));
}
const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'requests.jsonl'), purpose: 'batch' });
check(file.object === 'file' && file.purpose === 'batch' && file.filename === 'requests.jsonl', 'uploaded file', file);
let batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
check(batch.status === 'validating' && batch.input_file_id === file.id, 'batch created', batch);
while (!['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) {
  await sleep(20);
  batch = await client.batches.retrieve(batch.id);
}
check(batch.status === 'completed' && batch.request_counts.total === 20 && batch.request_counts.completed === 20 && batch.output_file_id, 'batch completed', batch);
const content = await (await client.files.content(batch.output_file_id)).text();
const results = content.trim().split('\n').map((l) => JSON.parse(l));
check(results.length === 20, '20 output lines', results.length);
for (const res of results) {
  check(res.response.status_code === 200 && res.error === null, 'output line', res);
  check(res.response.body.object === 'chat.completion' && res.response.body.choices[0].message.content.length > 0 && res.response.body.tpo.width === 2, 'output body', res.response.body);
}
const listed = [];
for await (const b of client.batches.list()) listed.push(b.id);
check(listed.includes(batch.id), 'listed batch', listed);
out.batch = { id: batch.id, output_file_id: batch.output_file_id, custom_ids: results.map((x) => x.custom_id).sort() };

// A model name as settings: PRESET/MODEL.
const models = (await client.models.list()).data.map((m) => m.id);
check(models.includes(`tpo/${models[0]}`) && models.includes(`off/${models[0]}`), 'presets listed for each model', models);
const preset = await client.chat.completions.create({ model: 'bon-n3/policy-model', messages: [{ role: 'user', content: 'Name a tree.' }] });
check(preset.model === 'bon-n3/policy-model' && preset.tpo.mode === 'bon' && preset.tpo.width === 3 && preset.tpo.requests === 1, 'preset completion', preset);
out.preset = { model: preset.model, tpo: { mode: preset.tpo.mode, width: preset.tpo.width } };

// A tool call passed through as the model produced it.
const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
const tc = await client.chat.completions.create({ model: 'policy-model', messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools });
const call = tc.choices[0].message.tool_calls?.[0];
check(tc.choices[0].finish_reason === 'tool_calls' && call && call.function.name === 'get_weather' && JSON.parse(call.function.arguments).city === 'Paris', 'tool call', tc.choices[0]);
check(tc.tpo.stop_reason === 'tool_calls' && tc.tpo.unoptimized.includes('tool calls'), 'tpo says why', tc.tpo);
// The result sent back: a text answer, optimized.
const answer = await client.chat.completions.create({
  model: 'policy-model',
  messages: [{ role: 'user', content: 'What is the weather in Paris?' }, tc.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '18C, sunny' }],
  tools,
  tpo: { width: 2, depth: 1 },
});
check(answer.choices[0].finish_reason === 'stop' && answer.choices[0].message.content.length > 0 && answer.tpo.requests === 4, 'answer after the tool', answer);
// Streamed, the stream helper accumulates the call.
const toolStream = client.chat.completions.stream({ model: 'policy-model', messages: [{ role: 'user', content: 'Weather in Rome?' }], tools });
const streamed = await toolStream.finalChatCompletion();
check(streamed.choices[0].message.tool_calls[0].function.name === 'get_weather', 'streamed tool call', streamed.choices[0]);
// And as a response: a function_call item.
const rt = await client.responses.create({ model: 'policy-model', input: 'Weather in Oslo?', tools: [{ type: 'function', name: 'get_weather', parameters: { type: 'object' }, strict: false }] });
check(rt.output[0].type === 'function_call' && rt.output[0].name === 'get_weather' && rt.output[0].call_id, 'function_call item', rt.output);
out.tool = { id: call.id, name: call.function.name, arguments: call.function.arguments, response_call: rt.output[0].call_id };

console.log(JSON.stringify(out));
