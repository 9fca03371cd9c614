#!/usr/bin/env python3
"""taOS's chat route, rewired to taosagent: send a message with a trace id and
yield the reply dicts of its turn, resuming by trace id when the connection
drops (a daemon restart included). Standard library only.

    python3 taos_reply.py BASE_URL AGENT TRACE_ID TEXT   (token in $TAOSAGENT_TOKEN)

prints each dict as one JSON line.
"""
import http.client, json, os, sys, time, urllib.error, urllib.parse, urllib.request


def reply(base, token, agent, text, trace_id, tries=120):
    got = 0  # dicts received so far: a resumed stream skips them
    for _ in range(tries):
        url = f"{base}/v1/agents/{agent}/reply"
        body = json.dumps({"text": text, "trace_id": trace_id}).encode()  # idempotent by trace id
        if got:
            url, body = url + "?" + urllib.parse.urlencode({"trace_id": trace_id, "after": got}), None
        req = urllib.request.Request(url, data=body, headers={"Authorization": "Bearer " + token})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                for line in resp:
                    if line.strip():  # a blank line is a keep-alive
                        d = json.loads(line)
                        got += 1
                        yield d
                        if d["kind"] in ("final", "error"):
                            return  # one terminal dict per turn
        except urllib.error.HTTPError:
            raise  # refused (bad request, unknown agent): no retry
        except (OSError, http.client.HTTPException):  # refused, reset, cut: resume by trace id
            time.sleep(0.5)
    raise RuntimeError("no terminal dict: the daemon stayed unreachable")


if __name__ == "__main__":
    base, agent, trace_id, text = sys.argv[1:5]
    for d in reply(base.rstrip("/"), os.environ["TAOSAGENT_TOKEN"], agent, text, trace_id):
        print(json.dumps(d), flush=True)
