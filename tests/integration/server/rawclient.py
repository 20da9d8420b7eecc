"""Raw-socket clients for the server tests: what curl cannot do."""
import socket, sys, time

def conn(path):
    for _ in range(1000):  # a full listen backlog answers EAGAIN: retry
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            time.sleep(0.005)
    raise OSError("could not connect")

def exchange(path, data):
    s = conn(path)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out

def status(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except Exception:
        return 0

cmd, path = sys.argv[1], sys.argv[2]
if cmd == "raw":  # send stdin bytes, print the status
    print(status(exchange(path, sys.stdin.buffer.read())))
elif cmd == "drop":  # open and drop N connections, half after a partial request
    for i in range(int(sys.argv[3])):
        s = conn(path)
        if i % 2:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        s.close()
    print("dropped")
elif cmd == "slow":  # one byte per second, print what comes back
    s = conn(path)
    req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    out = b""
    s.settimeout(1.1)
    for b in req:
        try:
            s.sendall(bytes([b]))
        except OSError:
            break
        try:
            got = s.recv(4096)
            if not got:
                break
            out += got
        except socket.timeout:
            pass
        if out:
            break
    print(status(out))
elif cmd == "abandon":  # start a stream, read a little, vanish
    s = conn(path)
    body = b'{"prompt":"Once upon a time","max_tokens":400,"stream":true}'
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    s.recv(100)
    s.close()
    print("abandoned")
