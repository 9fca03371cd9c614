// The official OpenAI client from the npm registry, a client no one here
// wrote, against taosagent's gateway with an agent's key.
// usage: node openai_client.mjs BASE_URL KEY MODEL OTHER_MODEL
import OpenAI from "openai";

const [baseURL, apiKey, model, other, mode] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const out = {};
if (mode === "budget") {
  // One call, that the agent's budget should stop.
  try {
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }] });
    out.budget = { status: 200 };
  } catch (e) {
    out.budget = { status: e.status, type: e.type, message: e.message };
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}
const stream = await client.chat.completions.create({
  model, stream: true, messages: [{ role: "user", content: "hello" }],
});
let text = "";
for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
out.text = text;
out.models = (await client.models.list()).data.map((m) => m.id);
try {
  await client.chat.completions.create({ model: other, messages: [{ role: "user", content: "hello" }] });
  out.refused = null;
} catch (e) {
  out.refused = { status: e.status, type: e.type, code: e.code, message: e.message };
}
try {
  await new OpenAI({ baseURL, apiKey: "tak_not_a_key", maxRetries: 0 }).models.list();
  out.wrongKey = 200;
} catch (e) {
  out.wrongKey = e.status;
}
console.log(JSON.stringify(out));
