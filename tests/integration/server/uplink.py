"""Clients for tests/integration/uplink.sh: concurrent load and a stream
whose cloud is killed mid-way, each answer parsed strictly (proto.py).
Usage: uplink.py COMMAND SOCKET [ARGS]."""
import json, os, signal, sys, threading, time
sys.path.insert(0, os.path.dirname(__file__))
from proto import conn, read_all, response, Bad

PROMPT = "Once upon a time"

def request(body, path="/v1/completions"):
    b = json.dumps(body).encode()
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(b))) + b

def events(body):
    """The data of each SSE event."""
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    return out

def one(sock, stream, max_tokens):
    """(route, id, text, finish) of one whole answer; Bad if anything is off."""
    s = conn(sock, timeout=60)
    s.sendall(request({"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0,
                       "stream": stream}))
    data, closed = read_all(s, 60)
    s.close()
    status, fields, body, _ = response(data)
    if status != 200:
        raise Bad("status %d: %r" % (status, body[:200]))
    route = fields.get("x-nibble-route", "?")
    if not stream:
        o = json.loads(body)
        return route, o["id"], o["choices"][0]["text"], o["choices"][0]["finish_reason"]
    text, finish, ids, done = "", None, set(), 0
    for e in events(body):
        if e == "[DONE]":
            done += 1
            continue
        o = json.loads(e)
        if "error" in o:
            raise Bad("error event: %s" % e)
        ids.add(o["id"])
        for c in o["choices"]:
            text += c.get("text") or ""
            finish = c.get("finish_reason") or finish
    if done != 1 or len(ids) != 1:
        raise Bad("done=%d ids=%d" % (done, len(ids)))
    return route, ids.pop(), text, finish

def load(sock, n, max_tokens, ref):
    """n requests at once (every other one streamed): all answered, once each."""
    results, errors = [None] * n, []
    def run(i):
        try:
            results[i] = one(sock, i % 2 == 1, max_tokens)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append("request %d: %s" % (i, e))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r]
    ids = {r[1] for r in done}
    wrong = [r for r in done if r[2] != ref or r[3] != "length"]
    routes = {}
    for r in done:
        routes[r[0]] = routes.get(r[0], 0) + 1
    print("answered=%d unique_ids=%d wrong=%d errors=%d local=%d cloud=%d" %
          (len(done), len(ids), len(wrong), len(errors), routes.get("local", 0),
           routes.get("cloud", 0)))
    for e in errors[:5]:
        print("#", e)
    for r in wrong[:3]:
        print("# wrong:", r)

def cut(sock, pid):
    """A cloud stream whose cloud dies after the first text: it must end
    with one error event and no [DONE] or finish_reason."""
    s = conn(sock, timeout=30)
    s.sendall(request({"prompt": PROMPT, "max_tokens": 500, "temperature": 0, "stream": True,
                       "route": "cloud"}))
    data, killed = b"", False
    end = time.time() + 30
    while time.time() < end:
        b = s.recv(65536)
        if not b:
            break
        data += b
        if not killed and b'"text":"' in data.split(b"\r\n\r\n", 1)[-1]:
            os.kill(pid, signal.SIGKILL)
            killed = True
    s.close()
    status, fields, body, _ = response(data)
    evs = events(body)
    errs = [e for e in evs if e.startswith('{"error"')]
    finishes = sum(1 for e in evs if '"finish_reason":"' in e)
    print("status=%d route=%s killed=%s texts=%d errors=%d finishes=%d done=%d last=%s" %
          (status, fields.get("x-nibble-route"), killed,
           sum(1 for e in evs if '"text":"' in e), len(errs), finishes,
           evs.count("[DONE]"), (errs or ["-"])[-1][:90]))

if __name__ == "__main__":
    cmd, sock = sys.argv[1], sys.argv[2]
    if cmd == "load":
        load(sock, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif cmd == "cut":
        cut(sock, int(sys.argv[3]))
    elif cmd == "one":
        print("route=%s id=%s finish=%s text=%s" % one(sock, sys.argv[3] == "stream",
                                                        int(sys.argv[4])))
