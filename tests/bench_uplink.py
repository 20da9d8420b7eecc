"""Time to first token of the uplink path against the direct path to the
same cloud: streamed completions (route: cloud) through the board's socket,
and the same requests straight to the cloud's TLS endpoint on one kept-alive
connection (as the uplink keeps its own). Usage:
bench_uplink.py BOARD_SOCK HOST PORT CA N"""
import json, socket, ssl, statistics, sys, time

def body(route):
    b = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "stream": True}
    if route:
        b["route"] = "cloud"
    return json.dumps(b).encode()

def req(b):
    return (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(b)) + b

def ttft_and_drain(s):
    """Seconds to the first text event; then reads to the end of the chunked stream."""
    t0, first, buf = time.perf_counter(), None, b""
    while not buf.endswith(b"0\r\n\r\n"):
        d = s.recv(65536)
        if not d:
            raise SystemExit("connection closed early")
        buf += d
        if first is None and b'"text":"' in buf and b'"text":""' not in buf.split(b'"text":"', 1)[0][-2:]:
            first = time.perf_counter() - t0
    return first

def run(connect, n, route):
    s = connect()
    out = []
    for _ in range(n + 2):
        s.sendall(req(body(route)))
        out.append(ttft_and_drain(s))
    s.close()
    return sorted(out[2:])  # the first two warm the connection up

def main():
    sock, host, port, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    ctx = ssl.create_default_context(cafile=ca)
    def direct():
        return ctx.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
    def board():
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        return s
    d, u = run(direct, n, False), run(board, n, True)
    med = lambda x: statistics.median(x) * 1e3
    p90 = lambda x: x[int(len(x) * 0.9) - 1] * 1e3
    print("direct to the cloud (TLS, kept alive): TTFT median %.2f ms, p90 %.2f ms" % (med(d), p90(d)))
    print("through the board's uplink:            TTFT median %.2f ms, p90 %.2f ms" % (med(u), p90(u)))
    print("added by the uplink:                   median %+.2f ms over %d requests each" %
          (med(u) - med(d), n))

main()
