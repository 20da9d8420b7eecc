"""Joins an OpenAI completion stream read from stdin into one line:
text="<all text deltas>" finish=<last finish_reason> done=<[DONE] seen>."""
import json
import sys

text, finish, done = "", None, 0
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("data: "):
        continue
    data = line[6:]
    if data == "[DONE]":
        done += 1
        continue
    for choice in json.loads(data).get("choices", []):
        text += choice.get("text") or choice.get("delta", {}).get("content") or ""
        finish = choice.get("finish_reason") or finish
print(f'text="{text}" finish={finish} done={done}')
