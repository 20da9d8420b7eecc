// The official OpenAI Node library against nibble serve's TCP listener.
// Like a real client it names the model GET /v1/models lists.
import OpenAI from "openai";
const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey });
const models = await client.models.list();
const model = models.data[0].id;
const whole = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 16, temperature: 0 });
console.log("completion:" + JSON.stringify(whole.choices[0].text) + " finish:" + whole.choices[0].finish_reason + " usage:" + whole.usage.completion_tokens);
const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 8, temperature: 0 });
console.log("chat:" + (typeof chat.choices[0].message.content) + " role:" + chat.choices[0].message.role);
const stream = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 8, temperature: 0, stream: true });
let text = "", n = 0;
for await (const chunk of stream) { text += chunk.choices[0]?.delta?.content ?? ""; n++; }
console.log("stream-chunks:" + n + " text:" + JSON.stringify(text));
console.log("models:" + models.data.map(m => m.id).join(","));
try {
	await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] });
	console.log("unknown-model:accepted");
} catch (e) {
	console.log("unknown-model:" + e.status + " " + e.code);
}
