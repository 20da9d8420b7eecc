#!/usr/bin/env python3
"""A first-order thermal model of a board, driven by the CPU time a real
`nibble serve` process takes, writing the fake thermal zone (and power rail)
the server's governor reads; and the load: concurrent completions over the
server's socket, without pause.

Model (simulated seconds; wall time runs SPEEDUP times slower):
    u  = CPU seconds nibble took per second / --cores   (smoothed; 1 = the
         board fully loaded, and more is counted as more)
    P  = P_idle + (P_full - P_idle) * u                  [W]
    dT/dt = (T_amb + R_th * P - T) / tau                [C/s]

Raspberry Pi 5 with the official Active Cooler, in a closed enclosure
(docs/governor.md gives the sources):
    P_idle 2.7 W, P_full 7.0 W (4 cores busy)  - whole-board power at 5 V
    R_th 6.5 C/W, tau 70 s                     - Active Cooler at its usual speed
    T_amb 45 C                                 - air inside the enclosure
Full load then settles at 45 + 6.5 * 7.0 = 90.5 C: past the firmware's
80 C throttle point and its 85 C hard limit, which is what the governor is
for. The same model stands in for the Jetson's power rail (power scenario).

--firmware simulates the firmware's own throttling (Raspberry Pi
documentation, "Frequency management and thermal control": between 80 C and
85 C the Arm cores are progressively throttled back, at 85 C further): the
ARM clock falls from 2.4 GHz to 1.5 GHz between 80 C and 85 C, and to the
minimum of 600 MHz at 85 C, applied as SIGSTOP/SIGCONT of nibble for that
share of each 20 ms.

Prints one JSON line of results."""
import argparse
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time

P_IDLE, P_FULL, R_TH, TAU = 2.7, 7.0, 6.5, 70.0


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def get(sock, path):
    c = UnixHTTP(sock)
    c.request("GET", path)
    body = c.getresponse().read().decode()
    c.close()
    return body


def tokens(sock):
    for line in get(sock, "/metrics").splitlines():
        if line.startswith("nibble_generated_tokens_total "):
            return float(line.split()[1])
    return 0.0


def load(sock, stop, errors):
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0.8})
    while not stop.is_set():
        try:
            c = UnixHTTP(sock)
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
            c.close()
        except OSError as e:
            errors.append(str(e))
            time.sleep(0.05)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def firmware_speed(t, hard):
    """The Pi firmware's ARM clock as a share of 2.4 GHz: progressively down
    to 1.5 GHz between 5 C under the hard limit and the limit, then the
    minimum, 600 MHz, at the limit."""
    if t >= hard:
        return 0.25
    if t >= hard - 5:
        return 1 - 0.375 * (t - (hard - 5)) / 5
    return 1.0


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--root", required=True)
    a.add_argument("--pid", type=int, required=True)
    a.add_argument("--sock", required=True)
    a.add_argument("--seconds", type=float, required=True, help="wall seconds")
    a.add_argument("--speedup", type=float, default=10)
    a.add_argument("--cores", type=float, default=1.0, help="CPU seconds per second that count as full load")
    a.add_argument("--clients", type=int, default=4)
    a.add_argument("--t0", type=float, default=70)
    a.add_argument("--ambient", type=float, default=45)
    a.add_argument("--step", default=None, help="WALL_S:AMBIENT, a step of ambient temperature")
    a.add_argument("--target", type=float, default=77,
                   help="the governor's; it is 'crossed' at 0.5 C under it (it may hold just under)")
    a.add_argument("--firmware", action="store_true")
    a.add_argument("--hard", type=float, default=85)
    a.add_argument("--budget", type=float, default=0)
    a.add_argument("--trace", default=None, help="write wall, T, u, P samples to this file")
    a.add_argument("--settle", type=float, default=0.3, help="share of the run before averages")
    o = a.parse_args()

    zone = os.path.join(o.root, "sys/class/thermal/thermal_zone0/temp")
    hw = os.path.join(o.root, "sys/class/hwmon/hwmon0")
    has_rail = os.path.isdir(hw)
    stop = threading.Event()
    errors = []
    T, amb, u = o.t0, o.ambient, 0.0
    write_atomic(zone, "%d\n" % round(T * 1000))
    clients = [threading.Thread(target=load, args=(o.sock, stop, errors)) for _ in range(o.clients)]
    for c in clients:
        c.start()
    tok0 = tokens(o.sock)
    t_start = time.monotonic()
    t_prev, cpu_prev = t_start, cpu_seconds(o.pid)
    crossed_at, max_after, max_t = None, -1e9, T
    stopped, throttled_s = False, 0.0
    samples = []  # (wall, T, u, P)
    tok_cross = None
    dt_step = 0.02
    while True:
        now = time.monotonic()
        el = now - t_start
        if el >= o.seconds:
            break
        if o.step:
            at, val = o.step.split(":")
            amb = float(val) if el >= float(at) else o.ambient
        # simulated firmware: a duty cycle of SIGSTOP at the firmware's speed
        if o.firmware:
            speed = firmware_speed(T, o.hard)
            throttled_s += (1 - speed) * 0.005
            want_stop = (el % 0.02) / 0.02 >= speed
            if want_stop != stopped:
                os.kill(o.pid, signal.SIGSTOP if want_stop else signal.SIGCONT)
                stopped = want_stop
        time.sleep(0.005 if o.firmware else dt_step)
        now = time.monotonic()
        dt = now - t_prev
        if dt < dt_step:
            continue
        cpu = cpu_seconds(o.pid)
        inst = max(0.0, (cpu - cpu_prev) / dt / o.cores)
        u += (inst - u) * min(1.0, dt / 0.1)
        P = P_IDLE + (P_FULL - P_IDLE) * u
        T += (amb + R_TH * P - T) * dt * o.speedup / TAU
        t_prev, cpu_prev = now, cpu
        write_atomic(zone, "%d\n" % round(T * 1000))
        if has_rail:
            write_atomic(os.path.join(hw, "in1_input"), "5000\n")
            write_atomic(os.path.join(hw, "curr1_input"), "%d\n" % round(P / 5 * 1000))
        samples.append((el, T, u, P))
        max_t = max(max_t, T)
        if crossed_at is None and T >= o.target - 0.5:
            crossed_at = el
            tok_cross = tokens(o.sock)
        if crossed_at is not None:
            max_after = max(max_after, T)
    if stopped:
        os.kill(o.pid, signal.SIGCONT)
    tok1 = tokens(o.sock)
    t_end = time.monotonic()
    stop.set()
    for c in clients:
        c.join()
    if o.trace:
        with open(o.trace, "w") as f:
            for s in samples:
                f.write("%.3f %.3f %.3f %.3f\n" % s)
    settle = o.seconds * o.settle
    late = [s for s in samples if s[0] >= settle]
    mean = lambda i: sum(s[i] for s in late) / max(1, len(late))
    # the thermal bound: the steady utilisation that holds the target
    u_star = min(1.0, max(0.0, ((o.target - amb) / R_TH - P_IDLE) / (P_FULL - P_IDLE)))
    res = {
        "seconds": t_end - t_start,
        "tokens": tok1 - tok0,
        "tokens_per_s": (tok1 - tok0) / (t_end - t_start),
        "tokens_per_s_after_cross": (tok1 - tok_cross) / (t_end - t_start - crossed_at)
        if crossed_at is not None else None,
        "crossed_at": crossed_at,
        "max_t": max_t,
        "max_after_cross": max_after if crossed_at is not None else None,
        "mean_t": mean(1),
        "mean_u": mean(2),
        "mean_p": mean(3),
        "u_star": u_star,
        "errors": len(errors),
        "final_t": T,
        "firmware_throttled_s": throttled_s * o.speedup,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
