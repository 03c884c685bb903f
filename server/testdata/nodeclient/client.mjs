// Drives a tpo serve instance with the official openai package and checks
// what the package parses. Run by server/nodeclient_test.go:
//
//	TPO_BASE_URL=http://127.0.0.1:PORT/v1 TPO_API_KEY=KEY node client.mjs
//
// It prints one JSON object with what it saw on stdout and exits non-zero
// on the first failed check.
import OpenAI from 'openai';

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

const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a prime number.' },
];
const out = {};

// Non-streamed, with TPO overrides in the body (what Python's extra_body
// sends; in JS extra params go into the body as they are).
const c = await client.chat.completions.create({
  model: 'policy-model',
  messages,
  n: 2,
  temperature: 0.3,
  tpo: { mode: 'tpo', width: 3, depth: 1 },
});
check(c.id.startsWith('chatcmpl-'), 'completion id', c.id);
check(c.object === 'chat.completion', 'object', c.object);
check(c.model === 'policy-model', 'model', c.model);
check(c.choices.length === 2, 'two choices', c.choices);
check(c.choices.every((ch, i) => ch.index === i && ch.finish_reason === 'stop' && ch.message.role === 'assistant'), 'choices', c.choices);
check(c.choices[0].message.content !== c.choices[1].message.content, 'distinct choices', c.choices);
check(c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens && c.usage.total_tokens > 0, 'usage', c.usage);
check(c.tpo && c.tpo.width === 3 && c.tpo.depth === 1 && c.tpo.requests === 4, 'tpo summary', c.tpo);
out.completion = { content: c.choices[0].message.content, usage: c.usage, run_id: c.tpo.run_id, score: c.tpo.score };

// Streamed, iterating raw chunks.
const stream = await client.chat.completions.create({
  model: 'policy-model',
  messages,
  stream: true,
  stream_options: { include_usage: true },
  tpo: { mode: 'tpo', width: 2, depth: 2 },
});
const kinds = [];
let content = '';
let usage = null;
let progress = 0;
for await (const chunk of stream) {
  check(chunk.object === 'chat.completion.chunk', 'chunk object', chunk);
  if (chunk.usage) {
    usage = chunk.usage;
    check(chunk.choices.length === 0, 'usage chunk without choices', chunk);
    kinds.push('usage');
    continue;
  }
  const ch = chunk.choices[0];
  if (ch.finish_reason) {
    kinds.push('finish');
    check(ch.finish_reason === 'stop', 'finish reason', ch);
  } else if (ch.delta.role) {
    kinds.push('role');
  } else if (chunk.tpo) {
    progress++;
    kinds.push('progress');
  } else if (ch.delta.content) {
    content += ch.delta.content;
    kinds.push('content');
  }
}
check(kinds[0] === 'role', 'role chunk first', kinds);
check(progress >= 7, 'progress chunks (sample + 3 per step + score)', kinds);
check(kinds.indexOf('content') > kinds.lastIndexOf('progress'), 'content after progress', kinds);
check(kinds.slice(-2).join(',') === 'finish,usage', 'finish then usage last', kinds);
check(content.length > 0, 'streamed content', content);
check(usage && usage.total_tokens > 0, 'streamed usage', usage);
out.stream = { content, usage, progress };

// The stream helper accumulates the chunks into a completion.
const helper = client.chat.completions.stream({
  model: 'policy-model',
  messages,
  stream_options: { include_usage: true },
  tpo: { mode: 'bon', width: 4 },
});
const final = await helper.finalChatCompletion();
check(final.choices[0].message.role === 'assistant' && final.choices[0].message.content.length > 0, 'helper completion', final);
check(final.choices[0].finish_reason === 'stop', 'helper finish reason', final.choices[0]);
check(final.usage && final.usage.total_tokens > 0, 'helper usage', final.usage);
out.helper = { content: final.choices[0].message.content, usage: final.usage };

// An invalid override is an APIError naming the parameter.
try {
  await client.chat.completions.create({ model: 'policy-model', messages, tpo: { width: 999 } });
  check(false, 'width 999 accepted', null);
} catch (err) {
  check(err instanceof OpenAI.APIError && err.status === 400, 'a 400 APIError', String(err));
  check(err.param === 'tpo.width', 'the error names tpo.width', err.error);
  out.error = { status: err.status, param: err.param, type: err.type };
}

// An upstream error the request caused (the policy server does not serve
// the model) is a 404 the SDK does not retry, even with retries on.
const retrying = new OpenAI({
  baseURL: process.env.TPO_BASE_URL,
  apiKey: process.env.TPO_API_KEY,
  maxRetries: 2,
  timeout: 20000,
});
try {
  await retrying.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'unknown model' }] });
  check(false, 'an unknown model accepted', null);
} catch (err) {
  check(err instanceof OpenAI.NotFoundError, 'a NotFoundError', String(err));
  out.unknownModel = { status: err.status, code: err.code, param: err.param, message: err.message };
}

// Pass-through.
const p = await client.chat.completions.create({ model: 'policy-model', messages, tpo: { mode: 'off' } });
check(p.tpo === undefined && p.choices[0].message.content.length > 0, 'pass-through answer', p);
out.passthrough = { content: p.choices[0].message.content };

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

console.log(JSON.stringify(out));
