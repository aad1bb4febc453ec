#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the recorded fixtures and a few hand-made inputs.

Run from fuzz/: python3 tools/make_seeds.py. Each TOP/JOS seed is one status-selector byte
then the body (see targets.rs); a second copy of each JSON body has its personal fields
replaced by PII- markers, so the fuzzer mutates around values it must never leak.
"""
import glob
import json
import os
import shutil

STATUSES = [200, 200, 200, 200, 201, 400, 401, 404, 429, 500, 502, 503]
PII_KEYS = {"buyer_nick", "buyer_open_uid", "receiver_name", "receiver_mobile", "receiver_phone",
            "receiver_address", "phone_num", "cert_card_num", "phone_owner_name", "pin",
            "fullname", "mobile", "telephone", "fullAddress"}
FIXTURES = "../tests/fixtures"


def mark(value, counter):
    if isinstance(value, dict):
        return {k: (f"PII-{k}-{next(counter)}" if k in PII_KEYS and isinstance(v, (str, int)) else mark(v, counter))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mark(v, counter) for v in value]
    return value


def write(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)


def status_byte(status):
    return bytes([STATUSES.index(status) if status in STATUSES else 0])


def counter():
    n = 0
    while True:
        n += 1
        yield n


def marketplace(target, pattern):
    for path in sorted(glob.glob(f"{FIXTURES}/{pattern}", recursive=True)):
        reply = json.load(open(path))["reply"]
        if "Ok" not in reply:
            continue
        status, body = reply["Ok"]["status"], reply["Ok"]["body"]
        name = path[len(FIXTURES) + 1:].replace("/", "_").removesuffix(".json")
        write(target, name, status_byte(status) + body.encode())
        try:
            marked = json.dumps(mark(json.loads(body), counter()), ensure_ascii=False)
        except ValueError:
            continue
        if marked != json.dumps(json.loads(body), ensure_ascii=False):
            write(target, name + "-pii", status_byte(status) + marked.encode())


def operator():
    level = {"sku": "IPH16-128", "warehouse": "WH-HZ", "on_hand": 12}
    resource = {"kind": "plan_quota", "code": "PLAN-5G-129", "available": 40}
    notice = {"notice_id": "N-1", "sequence": 1, "store_id": "tmall-flagship", "order_id": "401",
              "line_ids": ["L1"], "carrier": "SF", "waybill": "SF1400000000001",
              "serials": [{"line_id": "L1", "serials": ["356938035643809"]}],
              "shipped_at": "2026-11-11T00:30:00Z", "stock_watermark": 7, "corrects": None}
    seeds = {
        # [call, status selector, parameter, retry-after selector] + body
        "stock-full": (0, 0, 0, 0, {"watermark": 9, "full": True, "levels": [level], "resources": [resource]}),
        "stock-since": (1, 0, 5, 0, {"watermark": 9, "full": False, "levels": [level], "resources": []}),
        "shipments": (2, 0, 3, 0, {"notices": [notice], "watermark": 1}),
        "ping": (3, 0, 0, 0, {"ok": True}),
        "submit": (4, 0, 0, 0, {"result": "accepted"}),
        "submit-echo": (4, 5, 0, 0, {"error": {"code": "PII-13812345678",
                                               "message": "bad mobile PII-13812345678 for PII-name-Zhang-San"}}),
        "submit-throttled": (4, 8, 0, 1, {"error": {"code": "throttled", "message": "slow down"}}),
        "withdraw": (5, 0, 0, 0, {"result": "already_shipped"}),
    }
    for name, (call, status, param, retry, body) in seeds.items():
        write("operator", name, bytes([call, status, param, retry]) + json.dumps(body).encode())


def csv():
    for path in sorted(glob.glob(f"{FIXTURES}/operator/*.csv")):
        shutil.copy(path, f"seeds/csv/{os.path.basename(path)}")


def config():
    for path in ["../config/flagsync.example.toml", "../config/sandbox.toml"]:
        shutil.copy(path, f"seeds/config/{os.path.basename(path)}")
    text = open("../config/flagsync.example.toml", "rb").read()
    overrides = b"\0FLAGSYNC__DATABASE__URL=postgres://flagsync@db/flagsync\n" \
                b"FLAGSYNC__STORES__TMALL_FLAGSHIP__PAUSED=true\nFLAGSYNC__SYNC__WINDOW_MINS=9999\n"
    write("config", "example-with-overrides.toml", text + overrides)
    write("config", "unset-secret.toml", b'[stores.t]\ntype = "jd"\ngateway = "sandbox"\n'
          b'app_key = "k"\napp_secret = { env = "UNSET_X" }\naccess_token = { file = "secrets/empty.session" }\n')


def admin():
    for name, body in {
        "empty": b"",
        "incremental": b"{}",
        "range": b'{"since": "2026-11-11 00:00:00", "until": "2026-11-11T08:00:00+08:00"}',
        "order": b'{"order": "4012345678901234567"}',
        "half-range": b'{"since": "2026-11-11 00:00:00"}',
        "bad-order": b'{"order": 12}',
    }.items():
        write("admin", name, body)


if __name__ == "__main__":
    shutil.rmtree("seeds", ignore_errors=True)
    for target in ["top", "jos", "operator", "csv", "config", "admin"]:
        os.makedirs(f"seeds/{target}", exist_ok=True)
    marketplace("top", "taobao/**/*.json")
    marketplace("jos", "jd/*.json")
    operator()
    csv()
    config()
    admin()
