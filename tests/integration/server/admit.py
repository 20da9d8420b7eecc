"""Clients for tests/integration/server_admission.sh: who gets in, and what
the server holds for them. Each command prints one line to match."""
import json, os, socket, sys, threading, time


def rss_kib(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tcp(port):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    return s


def local(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def response(s, limit=5.0):
    """Status of the first response on s (0 if none), reading until a whole
    head and body arrived, the peer closed, or limit seconds."""
    s.settimeout(limit)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                if len(body) >= n:
                    break
    except (socket.timeout, ConnectionError):
        pass
    try:
        return int(data.split(b" ", 2)[1])
    except Exception:
        return 0


def closed_within(s, secs):
    """True if the peer closes s (EOF or reset) within secs."""
    s.settimeout(secs)
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except ConnectionError:
        return True


def health(path):
    try:
        s = local(path)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return response(s)
    except OSError as e:
        return type(e).__name__


def post(path_or_port, body, key=None, keep=True):
    """A POST /v1/completions; returns the socket after sending."""
    s = local(path_or_port) if not str(path_or_port).isdigit() else tcp(path_or_port)
    head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
    if key:
        head += "Authorization: Bearer %s\r\n" % key
    if not keep:
        head += "Connection: close\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    return s


cmd = sys.argv[1]
if cmd == "lockout":
    # n silent TCP connections fill TCP's limit; one more TCP client is
    # refused, a local one still gets in.
    port, sock, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    held = [tcp(port) for _ in range(n)]
    time.sleep(0.3)
    extra = tcp(port)
    print("extra-tcp:%s local:%s" % ("refused" if closed_within(extra, 2) else "open",
                                     health(sock)))
elif cmd == "close401":
    # a request without the key: 401, then the server closes the connection
    s = tcp(sys.argv[2])
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    st = response(s)
    print("%d %s" % (st, "closed" if closed_within(s, 3) else "kept-open"))
elif cmd == "early401":
    # the key is checked after the head: 401 before the body is sent
    s = tcp(sys.argv[2])
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    print("before-body:%d" % response(s, 3))
elif cmd == "flood":
    # n unauthenticated TCP clients each send a body of size bytes and stay
    # connected: the growth of the server's resident memory in KiB
    port, n, size, pid = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    before = rss_kib(pid)
    conns = []
    for _ in range(n):
        try:
            conns.append(post(port, b"x" * size))
        except OSError:
            pass
    time.sleep(0.5)
    print("grew-kib:%d" % (rss_kib(pid) - before))
elif cmd == "idle":
    # n local keep-alive clients each send a body of size bytes (a 400:
    # not JSON), get their answer and stay connected, idle
    sock, n, size, pid = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    before = rss_kib(pid)
    conns = [post(sock, b"{" + b"x" * (size - 1)) for _ in range(n)]
    codes = set(response(s) for s in conns)
    time.sleep(0.8)
    print("codes:%s grew-kib:%d" % (",".join(map(str, sorted(codes))), rss_kib(pid) - before))
elif cmd == "stall":
    # n clients send long prompts at once; meanwhile /health is timed
    sock, n, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    text = ("Once upon a time there was a little girl named Lily. " * (size // 50 + 1))[:size]
    body = json.dumps({"prompt": text, "max_tokens": 1}).encode()
    answered = []

    def wait(s):
        answered.append((response(s, 20), time.time()))

    t0 = time.time()
    conns = [post(sock, body) for _ in range(n)]
    waiters = [threading.Thread(target=wait, args=(s,)) for s in conns]
    for w in waiters:
        w.start()
    worst = 0.0
    while len(answered) < n:
        t = time.time()
        health(sock)
        worst = max(worst, time.time() - t)
    for w in waiters:
        w.join()
    # The prompts are tokenized one after another: total / n is the time
    # of one, which a stalled loop would make /health wait.
    one = (max(t for _, t in answered) - t0) / n
    print("codes:%s worst-health:%d%%-of-one-prompt (%d of %d ms)" % (
        ",".join(str(c) for c in sorted(set(c for c, _ in answered))), 100 * worst / one,
        worst * 1000, one * 1000))
elif cmd == "groups":
    # --allow-gid gid: a client whose supplementary groups hold gid gets in,
    # one without it does not (both uid and primary gid 65534)
    sock, gid = sys.argv[2], int(sys.argv[3])
    out = []
    for groups in ([gid], []):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.setgroups(groups)
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, str(health(sock)).encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        out.append(os.read(r, 100).decode() or "?")
        os.close(r)
    print("member:%s other:%s" % tuple(out))
else:
    sys.exit("unknown command " + cmd)
