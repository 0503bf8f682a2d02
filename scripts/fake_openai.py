#!/usr/bin/env python3
"""A loopback OpenAI-compatible endpoint that answers at once, for measuring picoclaw itself.

Usage: python3 scripts/fake_openai.py PORT [REQUEST_LOG]
- A user message containing "use a tool" gets a list_dir tool call; a tool result gets a text
  answer; anything else gets "Hello!". Streams (SSE) when the request says "stream": true.
- With REQUEST_LOG, the size in bytes of every request body is appended to that file.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer(body):
    msgs = body.get("messages", [])
    last = msgs[-1] if msgs else {}
    content = last.get("content")
    text = content if isinstance(content, str) else json.dumps(content)
    if last.get("role") == "user" and "use a tool" in (text or ""):
        return None, [{"id": "call_1", "type": "function",
                       "function": {"name": "list_dir", "arguments": "{\"path\": \".\"}"}}]
    if last.get("role") == "tool":
        return "The workspace is listed above.", None
    return "Hello!", None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every reused keep-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        if len(sys.argv) > 2:
            with open(sys.argv[2], "a") as f:
                f.write(f"{len(raw)}\n")
        body = json.loads(raw)
        text, calls = answer(body)
        finish = "tool_calls" if calls else "stop"
        usage = {"prompt_tokens": len(raw) // 4, "completion_tokens": 5,
                 "total_tokens": len(raw) // 4 + 5}
        if body.get("stream"):
            delta = {"role": "assistant"}
            if text:
                delta["content"] = text
            if calls:
                delta["tool_calls"] = [dict(c, index=0) for c in calls]
            chunks = [
                {"id": "x", "object": "chat.completion.chunk", "model": body.get("model"),
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                {"id": "x", "object": "chat.completion.chunk", "model": body.get("model"),
                 "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                {"id": "x", "object": "chat.completion.chunk", "model": body.get("model"),
                 "choices": [], "usage": usage},
            ]
            out = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            data = out.encode()
            ctype = "text/event-stream"
        else:
            msg = {"role": "assistant", "content": text}
            if calls:
                msg["tool_calls"] = calls
            data = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model"),
                               "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                               "usage": usage}).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
