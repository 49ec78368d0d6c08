// Drives a running `vlm4j serve` with the official openai package. Env: BASE_URL, API_KEY, IMAGE (a PNG path).
// Served models: "tiny" (its template opens <think> unless enable_thinking is false) and "tiny-lora" (an adapter).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, timeout: 120_000, maxRetries: 0 });
const dataUrl = 'data:image/png;base64,' + readFileSync(process.env.IMAGE).toString('base64');
const results = {};
const user = (text) => [{ role: 'user', content: text }];
const greedy = { temperature: 0, max_tokens: 24 };
const noThink = { chat_template_kwargs: { enable_thinking: false } };

// Models: the base model and the adapter.
const models = (await client.models.list()).data.map((m) => m.id);
assert.deepEqual(models.sort(), ['tiny', 'tiny-lora']);
results.models = models;

// A data-URL image, thinking on: the template opened <think>, so the (truncated) output is reasoning.
const withImage = await client.chat.completions.create({
  model: 'tiny', ...greedy,
  messages: [{ role: 'user', content: [
    { type: 'image_url', image_url: { url: dataUrl } },
    { type: 'text', text: 'Describe the image.' }] }],
});
assert.equal(withImage.object, 'chat.completion');
assert.equal(withImage.choices.length, 1);
assert.ok(withImage.usage.prompt_tokens > 10, 'image tokens counted');
assert.ok(withImage.usage.completion_tokens > 0);
const thinking = withImage.choices[0].message;
assert.equal(typeof thinking.reasoning_content, 'string');
assert.ok(thinking.reasoning_content.length > 0, 'reasoning_content returned beside content');
results.image = { reasoning: thinking.reasoning_content, content: thinking.content, usage: withImage.usage };

// Thinking switched off: no reasoning, all content.
const plain = await client.chat.completions.create({ model: 'tiny', ...greedy, ...noThink, messages: user('Say something.') });
const text = plain.choices[0].message.content;
assert.equal(plain.choices[0].message.reasoning_content ?? null, null);
assert.ok(text.length > 0);
results.plain = text;

// Streaming gives the same text, in chunks, ending with usage when asked (the SDK consumes [DONE]).
const stream = await client.chat.completions.create({
  model: 'tiny', ...greedy, ...noThink, messages: user('Say something.'), stream: true, stream_options: { include_usage: true },
});
let streamed = '', chunks = 0, finish = null, usage = null;
for await (const chunk of stream) {
  chunks++;
  assert.equal(chunk.object, 'chat.completion.chunk');
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta?.content) streamed += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
assert.equal(streamed, text);
assert.ok(chunks > 3, 'several chunks');
assert.ok(finish === 'length' || finish === 'stop');
assert.equal(usage.completion_tokens, plain.usage.completion_tokens);
results.stream = { chunks, finish };

// Stop strings: cut before the first occurrence, finish_reason "stop".
const stop = text.length > 8 ? text.substring(4, 7) : text.substring(1, 2);
const stopped = await client.chat.completions.create({ model: 'tiny', ...greedy, ...noThink, messages: user('Say something.'), stop: [stop] });
assert.equal(stopped.choices[0].message.content, text.substring(0, text.indexOf(stop)));
assert.equal(stopped.choices[0].finish_reason, 'stop');
results.stop = { stop, content: stopped.choices[0].message.content };

// n = 2 with sampling and a seed: two choices.
const two = await client.chat.completions.create({ model: 'tiny', ...noThink, messages: user('Pick a word.'), n: 2, temperature: 1, top_p: 1, top_k: 0, seed: 7, max_tokens: 8 });
assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
for (const c of two.choices) assert.equal(typeof c.message.content, 'string');
assert.notEqual(two.choices[0].message.content, two.choices[1].message.content, 'choices are sampled independently');
results.n2 = two.choices.map((c) => c.message.content);

// Logprobs with top_logprobs.
const lp = await client.chat.completions.create({ model: 'tiny', ...greedy, ...noThink, max_tokens: 6, messages: user('Hi'), logprobs: true, top_logprobs: 3 });
const entries = lp.choices[0].logprobs.content;
assert.equal(entries.length, lp.usage.completion_tokens);
for (const e of entries) {
  assert.ok(e.logprob <= 0);
  assert.equal(e.top_logprobs.length, 3);
  assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[2].logprob);
  assert.ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-4, 'greedy picks the top token');
}
results.logprobs = entries.length;

// An adapter chosen by model name answers under its own name, with its own weights.
const lora = await client.chat.completions.create({ model: 'tiny-lora', ...greedy, ...noThink, messages: user('Say something.') });
assert.equal(lora.model, 'tiny-lora');
assert.notEqual(lora.choices[0].message.content, text, 'the adapter changes the output');
results.adapter = lora.choices[0].message.content;

// Errors surface as the SDK's typed errors.
await assert.rejects(client.chat.completions.create({ model: 'nope', messages: user('hi') }), (e) => e.status === 404);
const bad = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: 'wrong', maxRetries: 0 });
await assert.rejects(bad.chat.completions.create({ model: 'tiny', messages: user('hi') }), (e) => e.status === 401);

console.log(JSON.stringify(results));
console.log('ALL OK');
