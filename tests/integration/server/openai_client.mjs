// The official OpenAI Node library against nibble serve's TCP listener.
import OpenAI from "openai";
const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey });
const whole = await client.completions.create({ model: "any", prompt: "Once upon a time", max_tokens: 16, temperature: 0 });
console.log("completion:" + JSON.stringify(whole.choices[0].text) + " finish:" + whole.choices[0].finish_reason + " usage:" + whole.usage.completion_tokens);
const chat = await client.chat.completions.create({ model: "any", messages: [{ role: "user", content: "Hi" }], max_tokens: 8, temperature: 0 });
console.log("chat:" + (typeof chat.choices[0].message.content) + " role:" + chat.choices[0].message.role);
const stream = await client.chat.completions.create({ model: "any", messages: [{ role: "user", content: "Hi" }], max_tokens: 8, temperature: 0, stream: true });
let text = "", n = 0;
for await (const chunk of stream) { text += chunk.choices[0]?.delta?.content ?? ""; n++; }
console.log("stream-chunks:" + n + " text:" + JSON.stringify(text));
const models = await client.models.list();
console.log("models:" + models.data.map(m => m.id).join(","));
