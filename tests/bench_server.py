"""Load generator for `make bench`: N concurrent streaming completions over
nibble serve's unix socket. Reports aggregate generated tokens/s and the
p50/p99 time to first token (first content chunk) measured by the client."""
import json, socket, sys, threading, time

def one(path, prompt, max_tokens, out):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    t0 = time.monotonic()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    buf, first, tokens = b"", None, 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        if first is None and b'"text":"' in b and b'"text":""' not in b:
            first = time.monotonic() - t0
        buf += b
    s.close()
    for line in buf.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage":{' in line:
            tokens = json.loads(line[6:])["usage"]["completion_tokens"]
    out.append((first if first is not None else float("nan"), tokens, time.monotonic() - t0))

def run(path, n, max_tokens):
    out, threads = [], []
    # Short prompts: the synthetic vocabulary has no merges, so every byte
    # of a prompt is a token; what is measured is batched decoding.
    prompts = ["Hi%d" % (i % 10) for i in range(n)]
    t0 = time.monotonic()
    for p in prompts:
        t = threading.Thread(target=one, args=(path, p, max_tokens, out))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    ttft = sorted(o[0] for o in out)
    tokens = sum(o[1] for o in out)
    pct = lambda q: ttft[min(len(ttft) - 1, int(q * len(ttft)))]
    return tokens / wall, pct(0.5), pct(0.99), tokens, wall

path, max_tokens = sys.argv[1], int(sys.argv[2])
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
run(path, 1, max_tokens)  # warm-up, not counted: faults the weights in
# Each load level runs reps times, interleaved (1, 4, 16, 1, 4, 16, ...) so
# that a slow minute of this shared machine hits every level alike; the
# best run of each level is reported, like the kernel benchmarks' best-of.
best = {}
for r in range(reps):
    for n in (1, 4, 16):
        res = run(path, n, max_tokens)
        if n not in best or res[0] > best[n][0]:
            best[n] = res
print("streams  generated tok/s  TTFT p50 ms  TTFT p99 ms  (tokens, wall s)  best of %d" % reps)
for n in (1, 4, 16):
    rate, p50, p99, tokens, wall = best[n]
    print("%7d  %15.2f  %11.1f  %11.1f  (%d, %.1f)  %.2fx of 1 stream" %
          (n, rate, p50 * 1e3, p99 * 1e3, tokens, wall, rate / best[1][0]))
