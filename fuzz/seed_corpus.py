#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from the inputs the crates' tests use (and,
for config, the JSON examples in docs/). Each file is named by the SHA-1 of its content, as
libFuzzer names what it finds. Run from the repository's top: python3 fuzz/seed_corpus.py
(docs/fuzzing.md: how to add an entry)."""
import glob, gzip, hashlib, io, json, os, re, sys, tarfile, time, zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def j(v):
    return json.dumps(v, separators=(",", ":"))


def sse(events, event_names=None):
    out = ""
    for i, e in enumerate(events):
        if event_names:
            out += f"event: {event_names[i]}\n"
        out += f"data: {e}\n\n"
    return out


# ---- providers: first byte picks the parser (fuzz_targets/providers.rs)
chat_body = [
    '{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,'
    '"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":1}},"model":"gpt-x"}',
    '{"choices":[{"message":{"content":"","tool_calls":[{"id":"a","type":"function",'
    '"function":{"name":"exec","arguments":{"command":"ls"}}}]},"finish_reason":"stop"}]}',
    '{"choices":[{"message":{"content":"<tool_call>{\\"name\\": \\"exec\\", \\"arguments\\": {\\"command\\": \\"ls\\"}}</tool_call>"},"finish_reason":"stop"}]}',
    '{"choices":[]}',
    "<html>bad gateway</html>",
]
chat_chunks = [
    '{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}',
    '{"choices":[{"index":0,"delta":{"content":"Let me "}}]}',
    '{"choices":[{"index":0,"delta":{"content":"look."}}]}',
    '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read_file","arguments":""}}]}}]}',
    '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"pa"}}]}}]}',
    '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"list_dir","arguments":"{}"}}]}}]}',
    '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\\":\\"a\\"}"}}]}}]}',
    '{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}',
    '{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}',
]
text_chunks = [
    '{"choices":[{"index":0,"delta":{"content":"<tool_call>{\\"name\\": \\"exec\\", "}}]}',
    '{"choices":[{"index":0,"delta":{"content":"\\"arguments\\": {\\"command\\": \\"ls\\"}}</tool_call>"}}]}',
    '{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
]
responses_body = [
    j({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
       "output": [{"type": "reasoning"}, {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}],
       "usage": {"input_tokens": 3, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1},
                 "output_tokens_details": {"reasoning_tokens": 2}}}),
    j({"status": "completed", "output": [{"type": "function_call", "call_id": "c1", "name": "exec",
                                           "arguments": "{\"command\":\"ls\"}"}]}),
    j({"status": "failed", "error": {"message": "boom"}}),
]
responses_events = [
    j({"type": "response.created", "response": {"id": "r1"}}),
    j({"type": "response.output_text.delta", "output_index": 0, "delta": "Hel"}),
    j({"type": "response.output_text.delta", "output_index": 0, "delta": "lo"}),
    j({"type": "response.output_item.added", "output_index": 1,
       "item": {"type": "function_call", "call_id": "c1", "name": "exec"}}),
    j({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"command\":"}),
    j({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "\"ls\"}"}),
    j({"type": "response.completed", "response": json.loads(responses_body[1])}),
]
anthropic_events = [
    '{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":1}}}',
    '{"type":"ping"}',
    '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}',
    '{"type":"content_block_stop","index":0}',
    '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"exec","input":{}}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"comm"}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"and\\": \\"ls\\"}"}}',
    '{"type":"content_block_stop","index":1}',
    '{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":20}}',
    '{"type":"message_stop"}',
]
anthropic_body = [
    '{"content":[{"type":"text","text":"Hi"}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":4}}',
    '{"content":[{"type":"tool_use","id":"t1","name":"exec","input":{"command":"ls"}}],"stop_reason":"tool_use"}',
    '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
]
gemini_chunks = [
    '{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}]}',
    '{"candidates":[{"content":{"parts":[{"functionCall":{"name":"exec","args":{"command":"ls"}}}]},"finishReason":"STOP"}],'
    '"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}',
]
text_tools = [
    '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.txt"}}\n</tool_call>',
    'Let me look.\n<tool_call>{"name": "read_file", "arguments": {"path": "a"}}</tool_call>\n'
    '<tool_call>{"name": "exec", "arguments": {"command": "ls"}}</tool_call>',
    '[TOOL_CALLS] [{"name": "exec", "arguments": {"command": "pwd"}}]',
    '<|python_tag|>{"name": "read_file", "parameters": {"path": "x"}}; {"name": "exec", "parameters": {"command": "ls"}}',
    '{"name": "exec", "parameters": {"command": "date"}}',
    '```json\n{"name": "read_file", "arguments": "{\\"path\\": \\"b\\"}"}\n```',
    '<tool_call>not json</tool_call>',
]
for b in chat_body:
    put("providers", b"\x00" + b.encode())
    put("providers", b"\x02" + b.encode())
put("providers", b"\x01" + (sse(chat_chunks) + "data: [DONE]\n\n").encode())
put("providers", b"\x01" + sse(text_chunks).encode())
put("providers", b"\x01" + sse(chat_chunks[:3]).encode())
for b in responses_body:
    put("providers", b"\x03" + b.encode())
put("providers", b"\x04" + sse(responses_events).encode())
put("providers", b"\x04" + sse([j({"type": "error", "message": "slow down"})]).encode())
for b in anthropic_body:
    put("providers", b"\x05" + b.encode())
put("providers", b"\x06" + sse(anthropic_events, [json.loads(e)["type"] for e in anthropic_events]).encode())
for b in gemini_chunks:
    put("providers", b"\x07" + b.encode())
put("providers", b"\x08" + sse(gemini_chunks).encode())
for t in text_tools:
    put("providers", b"\x09" + t.encode())

# ---- markdown: first byte picks the dialect
md = [
    "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `x < y`.\n\n> quoted & kept\n\n[link](https://example.com/?a=1&b=2)",
    "```rust\nfn main() { if a < b {} }\n```",
    "<script>alert(1)</script> and <b>fake</b>",
    "- a\n  - b\n- c\n\n1. one\n2. two\n\n- [x] done\n- [ ] todo",
    "ping <!channel> and <@U1> [x](https://e.com/a|b)",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "> a\n>\n> b\n\n***\n\n![img](https://e.com/i.png) <https://example.com/b>",
]
for i, m in enumerate(md):
    for d in range(5):
        put("markdown", bytes([d]) + m.encode())
put("markdown", b"\x05\x14" + ("word " * 40 + "\n\n```py\n" + "x = 1\n" * 20 + "```\n").encode())

# ---- config: the file's text (NUL, then NAME=value lines)
docs = glob.glob("docs/*.md") + glob.glob("docs/*/*.md")
for f in sorted(docs):
    for block in re.findall(r"```json\n(.*?)```", open(f, encoding="utf-8").read(), re.S):
        try:
            v = json.loads(block)
        except ValueError:
            continue
        if isinstance(v, dict):
            put("config", block)
put("config", '{"agents":{"defaults":{"model":"gpt-4o-mini","max_tokens":8192}}}\x00'
              "PICOCLAW_AGENTS_DEFAULTS_MODEL=anthropic/claude-x\nOPENAI_API_KEY=sk-test\n")
put("config", "\ufeff{}")

# ---- skills: 0 front matter, 1 SKILL.md, 2 manifest.json, 3 zip, 4 tar.gz
skill_md = ("---\nname: weather\ndescription: Looks up the weather.\nhomepage: https://e.com\n"
            'metadata: {"openclaw": {"requires": {"bins": ["curl"], "env": ["KEY"]}}}\n---\n\n# Weather\nUse curl.\n')
put("skills", b"\x00" + skill_md.encode())
put("skills", b"\x01" + skill_md.encode())
put("skills", b"\x01---\r\nname: a\ndescription: b\nmetadata:\n  nested: [1, 2]\n---\r\nbody")
put("skills", b"\x00---\nname: &a x\ndescription: *a\n---\n")
manifest = {"name": "weather", "description": "Weather.", "entry": "main.py",
            "tools": [{"name": "forecast", "description": "A forecast.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "permissions": {"network": True, "workspace_write": False, "env": ["KEY"]},
            "timeout_seconds": 30}
put("skills", b"\x02" + json.dumps(manifest).encode())


def zip_of(files):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return b.getvalue()


def tgz_of(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in files:
            if data is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    # A fixed gzip header time, so the seed is the same on every run.
    return gzip.compress(b.getvalue(), mtime=0)


files = [("SKILL.md", skill_md.encode()), ("scripts/run.sh", b"#!/bin/sh\necho hi\n")]
put("skills", b"\x03" + zip_of(files))
put("skills", b"\x03" + zip_of([("../evil", b"x")]))
put("skills", b"\x04" + tgz_of([("weather", None), ("weather/SKILL.md", skill_md.encode())]))
put("skills", b"\x04" + tgz_of([("./SKILL.md", skill_md.encode()), ("manifest.json", json.dumps(manifest).encode()),
                                ("main.py", b"print(1)\n")]))

# ---- webhooks: channel byte, flags byte (bit 0: unsigned, bit 1: variant), body
ALLOWED = "U0FUZZ"
line = {"destination": "Ubot", "events": [{
    "type": "message", "mode": "active", "timestamp": 1700000000000, "webhookEventId": "01FAKE1",
    "deliveryContext": {"isRedelivery": False}, "replyToken": "rt1",
    "source": {"type": "user", "userId": ALLOWED},
    "message": {"type": "text", "id": "1", "quoteToken": "q", "text": "hello there"}}]}
put("webhooks", b"\x00\x00" + j(line).encode())
line_group = json.loads(j(line))
line_group["events"][0]["source"] = {"type": "group", "groupId": "Cg1", "userId": ALLOWED}
line_group["events"][0]["message"]["mention"] = {"mentionees": [{"index": 0, "length": 5, "isSelf": True, "userId": "Ubot"}]}
put("webhooks", b"\x00\x00" + j(line_group).encode())
put("webhooks", b"\x00\x01" + j(line).encode())
wa = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
    "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": "100"},
        "contacts": [{"profile": {"name": "Ada"}, "wa_id": ALLOWED}],
        "messages": [{"from": ALLOWED, "id": "wamid.1", "timestamp": "1733390000", "type": "text",
                      "text": {"body": "hi"}},
                     {"from": ALLOWED, "id": "wamid.2", "timestamp": "1733390000", "type": "image",
                      "image": {"id": "900001", "mime_type": "image/jpeg", "sha256": "0", "caption": "look"}}]}}]}]}
put("webhooks", b"\x01\x00" + j(wa).encode())
put("webhooks", b"\x01\x01" + j(wa).encode())
put("webhooks", b"\x02\x00hub.mode=subscribe&hub.verify_token=fuzz-secret&hub.challenge=123")
slack_event = {"token": "legacy", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
               "event_id": "Ev1", "event_time": 1710000000,
               "event": {"type": "message", "channel": "D1", "channel_type": "im", "user": ALLOWED,
                         "text": "hello", "ts": "1710000000.000100"}}
put("webhooks", b"\x03\x00" + j(slack_event).encode())
slack_mention = json.loads(j(slack_event))
slack_mention["event"] = {"type": "app_mention", "channel": "C1", "user": ALLOWED, "text": "<@UBOT> hi",
                          "ts": "1710000000.000200", "thread_ts": "1710000000.000100"}
put("webhooks", b"\x03\x00" + j(slack_mention).encode())
put("webhooks", b"\x03\x00" + j({"type": "url_verification", "challenge": "abc"}).encode())
# Flag bit 1: a form (slash command, then an interaction's payload).
put("webhooks", b"\x03\x02" + b"command=%2Fask&text=hi&user_id=" + ALLOWED.encode() + b"&channel_id=C1")
put("webhooks", b"\x03\x02" + b"payload=" + j({"type": "block_actions", "user": {"id": ALLOWED},
    "channel": {"id": "C1"}, "actions": [{"action_id": "b1", "value": "yes"}]}).replace('"', "%22").encode())
tg = {"update_id": 1, "message": {"message_id": 5, "date": 1700000000,
      "chat": {"id": 42, "type": "private", "first_name": "Ada"},
      "from": {"id": 42, "is_bot": False, "first_name": "Ada", "username": ALLOWED}, "text": "/start hello"}}
put("webhooks", b"\x04\x00" + j(tg).encode())
tg_group = {"update_id": 2, "message": {"message_id": 6, "date": 1700000000,
            "chat": {"id": -100, "type": "supergroup", "title": "G"},
            "from": {"id": 42, "is_bot": False, "first_name": "Ada", "username": ALLOWED},
            "text": "@fuzzbot hi", "entities": [{"type": "mention", "offset": 0, "length": 8}]}}
put("webhooks", b"\x04\x00" + j(tg_group).encode())
qq_c2c = {"op": 0, "s": 1, "t": "C2C_MESSAGE_CREATE", "id": "C2C:1",
          "d": {"id": "ROBOT1.0_c2c1", "content": "hello", "timestamp": "2026-01-01T00:00:00+08:00",
                "author": {"id": ALLOWED, "user_openid": ALLOWED}, "attachments": []}}
put("webhooks", b"\x05\x00" + j(qq_c2c).encode())
qq_group = {"op": 0, "s": 2, "t": "GROUP_AT_MESSAGE_CREATE", "id": "G:1",
            "d": {"id": "ROBOT1.0_grp1", "content": "<@!1> hi", "timestamp": "2026-01-01T00:00:00+08:00",
                  "group_openid": "G1", "group_id": "G1", "author": {"id": ALLOWED, "member_openid": ALLOWED}}}
put("webhooks", b"\x05\x00" + j(qq_group).encode())
put("webhooks", b"\x05\x03" + j({"op": 13, "d": {"plain_token": "Arq0D5A61EgUu4OxUvOp", "event_ts": "1725442341"}}).encode())
fs_event = {"schema": "2.0",
            "header": {"event_id": "ev1", "event_type": "im.message.receive_v1", "create_time": "1710000000000",
                       "token": "fuzz-secret", "app_id": "cli_fuzz", "tenant_key": "tk"},
            "event": {"sender": {"sender_id": {"open_id": ALLOWED, "union_id": "on_1", "user_id": "u_1"},
                                 "sender_type": "user", "tenant_key": "tk"},
                      "message": {"message_id": "om_1", "create_time": "1710000000000", "chat_id": "oc_1",
                                  "chat_type": "p2p", "message_type": "text",
                                  "content": j({"text": "hello"}), "mentions": []}}}
put("webhooks", b"\x06\x00" + j(fs_event).encode())
fs_post = json.loads(j(fs_event))
fs_post["event"]["message"]["message_type"] = "post"
fs_post["event"]["message"]["content"] = j({"title": "Plan", "content": [[{"tag": "text", "text": "see "},
    {"tag": "a", "text": "docs", "href": "https://x.test/d"}], [{"tag": "img", "image_key": "img_1"}]]})
put("webhooks", b"\x06\x00" + j(fs_post).encode())
put("webhooks", b"\x06\x01" + j({"type": "url_verification", "token": "fuzz-secret", "challenge": "c1"}).encode())
wecom = ("<xml><ToUserName><![CDATA[wwfuzz]]></ToUserName><FromUserName><![CDATA[" + ALLOWED +
         "]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
         "<Content><![CDATA[hello]]></Content><MsgId>7000000001</MsgId><AgentID>1000002</AgentID></xml>")
put("webhooks", b"\x07\x00" + wecom.encode())
put("webhooks", b"\x07\x00" + wecom.replace("text]]></MsgType><Content><![CDATA[hello]]></Content>",
                                           "image]]></MsgType><PicUrl><![CDATA[http://127.0.0.1:9/p]]></PicUrl><MediaId><![CDATA[m1]]></MediaId>").encode())
put("webhooks", b"\x07\x01<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>")
put("webhooks", b"\x08\x00" + b"1234567890")
put("webhooks", b"\x09\x01msg_signature=x&timestamp=1&nonce=n")
put("webhooks", b"\x0a\x00" + "&#91;hi&#93; [CQ:at,qq=10001] a&amp;b [CQ:image,file=x.jpg,url=https://h/p?a=1&amp;b=2&#44;3]".encode())
put("webhooks", b"\x0a\x00see [CQ:at,qq=1")

# ---- mcp: even first byte = client side (the server's lines), odd = server side (the client's)
init_result = {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-06-18",
               "capabilities": {"tools": {"listChanged": True}}, "serverInfo": {"name": "s", "version": "1"}}}
tools = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
    {"name": "echo", "description": "Echoes.", "inputSchema": {"type": "object", "$schema": "x",
     "properties": {"text": {"type": "string", "default": "a"}}}},
    {"name": "Bad Name!", "inputSchema": {"properties": {"a": 1}}}]}}
call = {"jsonrpc": "2.0", "id": 2, "result": {"content": [
    {"type": "text", "text": "hi"}, {"type": "image", "data": "AAAA", "mimeType": "image/png"},
    {"type": "resource", "resource": {"uri": "file:///a", "text": "t"}},
    {"type": "resource_link", "uri": "file:///b", "name": "b"}], "isError": False}}
notif = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
put("mcp", b"\x00" + "\n".join(j(m) for m in [init_result, tools, call]).encode() + b"\n")
put("mcp", b"\x00" + "\n".join(j(m) for m in [init_result, notif, tools,
    {"jsonrpc": "2.0", "id": 2, "error": {"code": -32601, "message": "no"}}]).encode() + b"\n")
client_lines = [
    {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
     "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "a"}}},
    {"jsonrpc": "2.0", "id": 3, "method": "ping"},
]
put("mcp", b"\x01" + "\n".join(j(m) for m in client_lines).encode() + b"\n")
put("mcp", b"\x01" + j(client_lines[0]).encode() + b"\n" + b'{"jsonrpc":"2.0","id":1,"method":"nope"}\n')

# ---- fs_paths: NUL-separated operations, each an op byte then a path
ops = [
    (0, "a/b/file.txt"), (0, "out/secret"), (0, "../outside/secret"), (0, "@OUT@/secret"),
    (0, "sec"), (0, "abs/secret"), (0, "a/up/out/secret"), (0, "closed/secret"), (0, "cl/secret"),
    (0, "closed/open/file.txt"), (0, "closed/open/back"), (0, "@WS@/a/b/file.txt"), (0, "loop"),
    (2, "sec"), (3, "sec"), (1, "closed/open/../secret"), (4, "out"), (5, "newout"), (5, "out/new"),
    (5, "a/up/new"), (5, "@OUT@/new"), (5, "closed/x"), (5, "cl/x"), (6, "sec"), (6, "newout"),
    (7, "newout"), (7, "abs/new"), (8, "out/secret"), (8, "closed/secret"), (8, "cl/secret"),
    (9, "out"), (9, "closed"), (10, "out/d"), (10, "closed/d"), (11, "out"), (11, "cl"), (11, "a/in"),
    (11, "closed/open"), (12, "@WS@/x"), (12, "@OUT@"), (12, "~/x"), (13, "sec"), (13, "a/b/file.txt"),
]
for op, path in ops:
    put("fs_paths", bytes([op]) + path.encode())
put("fs_paths", b"\x00".join(bytes([op]) + p.encode() for op, p in ops[:16]))
put("fs_paths", b"\x05a/b/new\x00\x08a/b/new\x00\x0a@WS@/z/y\x00\x0bz")

# ---- inputs that crashed a target once (docs/fuzzing.md, "Found and fixed"), kept as seeds
put("markdown", bytes.fromhex("1102e57274da6628617b0a606060") + b"\x00" * 15 + b"b>")
put("fs_paths", b"\x0aclosed/d")
put("markdown", b"\x00*e.om\x01> a\n> >\nb\n\n**e.om/b>>")
put("providers", b"l\xef\xbb\xbf")

print("seeded", sum(len(os.listdir(os.path.join(ROOT, d))) for d in os.listdir(ROOT)), "files")
