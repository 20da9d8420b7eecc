"""HTTP framing checks for tests/integration/server_proto.sh: what curl hides.

Every answer is parsed strictly (status line, fields, Content-Length or
chunked or close-delimited body); a framing error is reported, never
papered over. Usage: proto.py COMMAND SOCKET [ARGS]."""
import json, re, socket, sys, time

def conn(path, timeout=15):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s

def read_all(s, deadline=15):
    """Everything until EOF; 'timeout' if the server neither answers nor closes."""
    out = b""
    end = time.time() + deadline
    while time.time() < end:
        try:
            b = s.recv(65536)
        except socket.timeout:
            return out, False
        if not b:
            return out, True
        out += b
    return out, False

class Bad(Exception):
    pass

def dechunk(data, pos):
    """The chunked body at data[pos:]: (payload, end); Bad if malformed or cut."""
    body = b""
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Bad("chunk size line cut at byte %d" % pos)
        line = data[pos:eol]
        if not re.fullmatch(rb"[0-9a-fA-F]+", line):
            raise Bad("bad chunk size line %r at byte %d" % (line[:40], pos))
        n = int(line, 16)
        pos = eol + 2
        if n == 0:
            if data[pos:pos + 2] != b"\r\n":
                raise Bad("last chunk not followed by CRLF")
            return body, pos + 2
        if len(data) < pos + n + 2:
            raise Bad("chunk of %d bytes cut" % n)
        if data[pos + n:pos + n + 2] != b"\r\n":
            raise Bad("chunk data not followed by CRLF at byte %d" % (pos + n))
        body += data[pos:pos + n]
        pos += n + 2

def response(data, pos=0, head_only=False):
    """One response at data[pos:]: (status, fields, body, end)."""
    he = data.find(b"\r\n\r\n", pos)
    if he < 0:
        raise Bad("no complete head at byte %d: %r" % (pos, data[pos:pos + 60]))
    lines = data[pos:he].decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.[01] (\d{3}) .*", lines[0])
    if not m:
        raise Bad("bad status line %r" % lines[0])
    fields = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        fields[k.strip().lower()] = v.strip()
    pos = he + 4
    if head_only:
        return int(m.group(1)), fields, b"", pos
    if fields.get("transfer-encoding") == "chunked":
        body, pos = dechunk(data, pos)
    elif "content-length" in fields:
        n = int(fields["content-length"])
        if len(data) < pos + n:
            raise Bad("body cut: %d of %d bytes" % (len(data) - pos, n))
        body, pos = data[pos:pos + n], pos + n
    else:
        body, pos = data[pos:], len(data)
    return int(m.group(1)), fields, body, pos

def events(body):
    """The SSE events of a stream body, as parsed JSON ("[DONE]" as is)."""
    out = []
    for ev in body.decode().split("\n\n"):
        if not ev:
            continue
        if not ev.startswith("data: "):
            raise Bad("not an SSE data event: %r" % ev[:60])
        out.append(ev[6:] if ev[6:] == "[DONE]" else json.loads(ev[6:]))
    return out

def post(path, body, version="1.1", extra=""):
    b = json.dumps(body).encode()
    return (b"POST %s HTTP/%s\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
            % (path.encode(), version.encode(), extra.encode(), len(b)) + b)

def text_of(evs):
    return "".join(e["choices"][0]["text"] for e in evs
                   if isinstance(e, dict) and e.get("choices"))

def summary(status, fields, body, closed):
    """One line a shell pattern can check."""
    if fields.get("content-type") == "text/event-stream":
        evs = events(body)
        fins = [e["choices"][0]["finish_reason"] for e in evs
                if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]]
        return ("%d stream te=%s events=%d finish=%s done=%d text=%s closed=%s" %
                (status, fields.get("transfer-encoding", "-"), len(evs), ",".join(fins),
                 evs.count("[DONE]"), json.dumps(text_of(evs)), closed))
    return "%d %s closed=%s" % (status, body.decode(errors="replace"), closed)

COMPLETION = {"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0}

def cmd_head(path):
    """HEAD then GET on one connection: the HEAD answer must have no body."""
    s = conn(path)
    s.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, closed = read_all(s)
    st1, f1, _, pos = response(data, head_only=True)
    st2, _, body2, end = response(data, pos)
    print("head=%d length=%s then=%d %s rest=%d closed=%s" %
          (st1, f1.get("content-length"), st2, body2.decode().strip(), len(data) - end, closed))

def cmd_halfclose(path, stream):
    """A request, then shutdown(SHUT_WR): the answer must still come."""
    s = conn(path)
    s.sendall(post("/v1/completions", dict(COMPLETION, stream=stream == "stream")))
    s.shutdown(socket.SHUT_WR)
    data, closed = read_all(s)
    if not data:
        print("no answer (0 bytes), closed=%s" % closed)
        return
    st, f, body, end = response(data)
    print(summary(st, f, body, closed), "rest=%d" % (len(data) - end))

def cmd_http10(path):
    """A stream asked in HTTP/1.0: no chunked coding, ends at the close."""
    s = conn(path)
    s.sendall(post("/v1/completions", dict(COMPLETION, stream=True), version="1.0"))
    data, closed = read_all(s)
    st, f, body, _ = response(data)
    print(summary(st, f, body, closed))

def cmd_pipeline(path, n, tokens):
    """n long streams and a GET pipelined on one connection, read only after
    the first answer filled the socket buffer: every one must be answered."""
    s = conn(path)
    req = b"".join(post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": int(tokens),
                                            "stream": True, "stream_options": {"include_usage": True}})
                   for _ in range(int(n)))
    s.sendall(req + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(1.5)
    data, closed = read_all(s, 20)
    pos, got = 0, []
    try:
        while pos < len(data):
            st, f, body, pos = response(data, pos)
            got.append("%d:%s" % (st, "stream" if f.get("content-type") == "text/event-stream"
                                  and events(body)[-1] == "[DONE]" else body[:30].decode()))
    except Bad as e:
        got.append("cut (%s)" % e)
    print("answers=%d %s closed=%s" % (len(got), " ".join(got), closed))

def cmd_tokens(path, tokens):
    """One streamed completion: text events against generated tokens."""
    s = conn(path)
    s.sendall(post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": int(tokens),
                                       "temperature": 0, "stream": True,
                                       "stream_options": {"include_usage": True}},
                   extra="Connection: close\r\n"))
    data, closed = read_all(s)
    st, f, body, _ = response(data)
    evs = events(body)
    texts = sum(1 for e in evs if isinstance(e, dict) and e.get("choices") and e["choices"][0]["text"])
    usage = [e["usage"] for e in evs if isinstance(e, dict) and e.get("usage")]
    print("events=%d tokens=%d" % (texts, usage[0]["completion_tokens"] if usage else -1))

def cmd_queued(path, n):
    """n long streams at once on n connections; prints how each ended:
    503 (never begun), or 200 and its finish or error event, and [DONE]."""
    socks = [conn(path, 30) for _ in range(int(n))]
    for s in socks:
        s.sendall(post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 500,
                                           "stream": True}, extra="Connection: close\r\n"))
    out = []
    for s in socks:
        data, closed = read_all(s, 30)
        st, f, body, end = response(data)
        if st == 200:
            evs = events(body)
            last = [e for e in evs if e != "[DONE]"][-1]
            how = "error" if "error" in last else last["choices"][0]["finish_reason"]
            out.append("200:%s%s" % (how, "+done" if evs[-1] == "[DONE]" else ""))
        else:
            out.append("%d:%s" % (st, json.loads(body)["error"]["type"]))
        if end != len(data) or not closed:
            out[-1] += "+garbage"
    print(" ".join(out))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        globals()["cmd_" + cmd](*args)
    except Bad as e:
        print("framing error:", e)
        sys.exit(1)
