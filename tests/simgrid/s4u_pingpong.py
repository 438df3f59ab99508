"""One-way message times on a SimGrid platform, with SimGrid's own S4U engine.

Run with the Python that has the ``simgrid`` bindings (Debian: /usr/bin/python3 with
python3-simgrid), not the project's virtual environment; it imports nothing from
collcost.  Usage::

    python3 s4u_pingpong.py PLATFORM.xml SRC_HOST DST_HOST SIZE [SIZE...]

Prints one JSON object ``{"sizes": [...], "seconds": [...]}``: for each size the
simulated time of one ``put`` of that many bytes from an actor on SRC_HOST to one on
DST_HOST (the same host: the loopback link), one message at a time.
"""
import json
import sys

from simgrid import Actor, Engine, Host, Mailbox


def main():
    platform, src, dst, *sizes = sys.argv[1:]
    sizes = [int(s) for s in sizes]
    times = []

    def sender():
        box = Mailbox.by_name("collcost")
        for n in sizes:
            t0 = Engine.clock
            box.put(n, n)
            times.append(Engine.clock - t0)

    def receiver():
        box = Mailbox.by_name("collcost")
        for _ in sizes:
            box.get()

    engine = Engine([sys.argv[0], "--log=root.thres:critical"])
    engine.load_platform(platform)
    Actor.create("sender", Host.by_name(src), sender)
    Actor.create("receiver", Host.by_name(dst), receiver)
    engine.run()
    print(json.dumps({"sizes": sizes, "seconds": times}))


if __name__ == "__main__":
    main()
