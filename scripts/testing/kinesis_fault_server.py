#!/usr/bin/env python3
"""A Kinesis PutRecords endpoint that checks SigV4 (with botocore) and injects failures.

moto never reports partial failures or throttling; this server does, so the tests can prove
that Sluice retries only the failed entries and never answers 2xx for an event that failed.
It is also the fast local endpoint of the benchmarks (it still verifies every signature).

  kinesis_fault_server.py PORT KEY_ID SECRET [--shards N] [--no-store]

--no-store (benchmarks): records are counted, not kept, and fault markers are not looked for.

Requests: JSON 1.1, X-Amz-Target Kinesis_20131202.PutRecords (and DescribeLimits). A record
whose data contains one of these markers fails on purpose:
  fault:throttle-once   ProvisionedThroughputExceededException on its first attempt
  fault:internal-twice  InternalFailure on its first two attempts
  fault:throttle-always ProvisionedThroughputExceededException every time
  fault:kms-denied      KMSAccessDeniedException (not retryable) every time
STS: an unsigned form POST with Action=AssumeRoleWithWebIdentity gets KEY_ID/SECRET and a fresh
session token (valid 302 s); a request carrying a session token is accepted only with one issued here.
Control (unsigned, loopback only): GET /_stats, POST /_faults {"throttle_calls": N} (the next N
calls fail whole with ProvisionedThroughputExceededException), POST /_reset.
"""
import base64
import hashlib
import json
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

port, key_id, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
shard_count = int(sys.argv[sys.argv.index("--shards") + 1]) if "--shards" in sys.argv else 4
store = "--no-store" not in sys.argv

lock = threading.Lock()
state = {}


def reset():
    with lock:
        state.update(calls=0, records=0, attempts={}, stored=[], batch_sizes=[], throttle_calls=0,
                     sequence=[0] * shard_count, signature_failures=0, sts_calls=0, session_tokens=[],
                     web_identity_tokens=[])


reset()
MAX_HASH = 2 ** 128


def shard_of(partition_key):
    h = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
    return min(h * shard_count // MAX_HASH, shard_count - 1)


def check_signature(handler, body):
    """None if the request is signed by KEY_ID/SECRET, else (code, message)."""
    authorization = handler.headers.get("Authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 "):].split(","))
    credential = fields["Credential"].split("/")
    if credential[0] != key_id:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    token = handler.headers.get("X-Amz-Security-Token")
    if token is not None and token not in state["session_tokens"]:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    amz_date = handler.headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
    if abs((datetime.now(timezone.utc) - signed_at).total_seconds()) > 300:
        return "InvalidSignatureException", "Signature expired"
    signed = fields["SignedHeaders"].split(";")
    headers = {name: handler.headers.get(name, "") for name in signed}
    request = AWSRequest(method=handler.command, url=f"http://{handler.headers['Host']}{handler.path}",
                         headers=headers, data=body)
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(key_id, secret, handler.headers.get("X-Amz-Security-Token")), credential[3], credential[2])
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if expected != fields["Signature"]:
        return "InvalidSignatureException", "The request signature we calculated does not match the signature you provided."
    return None


def fault_for(data, attempt):
    if b"fault:throttle-always" in data or (b"fault:throttle-once" in data and attempt == 1):
        return "ProvisionedThroughputExceededException", "Rate exceeded for shard in stream."
    if b"fault:internal-twice" in data and attempt <= 2:
        return "InternalFailure", "Internal service failure."
    if b"fault:kms-denied" in data:
        return "KMSAccessDeniedException", "The ciphertext references a key that doesn't exist or that you don't have access to."
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, code, message):
        self.reply(status, {"__type": code, "message": message})

    def do_GET(self):
        if self.path == "/_stats":
            with lock:
                self.reply(200, state)
        else:
            self.error(404, "UnknownOperationException", "no such path")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_reset":
            reset()
            return self.reply(200, {})
        if self.path == "/_faults":
            with lock:
                state.update(json.loads(body or b"{}"))
            return self.reply(200, {})
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self.sts(body)
        problem = check_signature(self, body)
        if problem:
            with lock:
                state["signature_failures"] += 1
            return self.error(400 if problem[0] != "UnrecognizedClientException" else 400, *problem)
        target = self.headers.get("X-Amz-Target", "")
        if target == "Kinesis_20131202.DescribeLimits":
            return self.reply(200, {"ShardLimit": 500, "OpenShardCount": shard_count, "OnDemandStreamCount": 0,
                                    "OnDemandStreamCountLimit": 50})
        if target != "Kinesis_20131202.PutRecords":
            return self.error(400, "UnknownOperationException", f"unsupported target {target}")
        request = json.loads(body)
        records = request.get("Records", [])
        if not records or len(records) > 500:
            return self.error(400, "ValidationException", "Records must hold 1 to 500 entries")
        with lock:
            state["calls"] += 1
            state["batch_sizes"].append(len(records))
            if state["throttle_calls"] > 0:
                state["throttle_calls"] -= 1
                throttled = True
            else:
                throttled = False
        if throttled:
            return self.error(400, "ProvisionedThroughputExceededException", "Rate exceeded for stream.")
        results, failed = [], 0
        with lock:
            for record in records:
                if store:
                    data = base64.b64decode(record["Data"])
                    key = data.decode("utf-8", "replace")
                    attempt = state["attempts"][key] = state["attempts"].get(key, 0) + 1
                    fault = fault_for(data, attempt)
                else:
                    fault = None  # benchmark mode: no fault markers, nothing kept
                if fault:
                    failed += 1
                    results.append({"ErrorCode": fault[0], "ErrorMessage": fault[1]})
                    continue
                shard = shard_of(record["PartitionKey"])
                state["sequence"][shard] += 1
                sequence = f"{shard:04d}{state['sequence'][shard]:052d}"
                shard_id = f"shardId-{shard:012d}"
                state["records"] += 1
                if store:
                    state["stored"].append({"data": key, "shard": shard_id, "sequence": sequence,
                                            "partition_key": record["PartitionKey"]})
                results.append({"SequenceNumber": sequence, "ShardId": shard_id})
        self.reply(200, {"FailedRecordCount": failed, "Records": results})


def sts_reply(handler, status, xml):
    body = xml.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/xml")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def sts(handler, body):
    """STS AssumeRoleWithWebIdentity (unsigned, as in AWS): issues KEY_ID/SECRET with a new session
    token that expires in 302 s, so a client renewing 5 minutes ahead renews every ~2 s."""
    form = dict(urllib.parse.parse_qsl(body.decode()))
    if form.get("Action") != "AssumeRoleWithWebIdentity" or not form.get("WebIdentityToken") or not form.get("RoleArn"):
        return sts_reply(handler, 400, "<ErrorResponse><Error><Code>InvalidParameterValue</Code>"
                                       "<Message>expected AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>")
    with lock:
        state["sts_calls"] += 1
        token = f"session-{state['sts_calls']}-{time.time_ns()}"
        state["session_tokens"].append(token)
        state["web_identity_tokens"].append(form["WebIdentityToken"])
    expiration = datetime.fromtimestamp(time.time() + 302, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sts_reply(handler, 200, f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{key_id}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <AssumedRoleUser><Arn>{form["RoleArn"]}/sluice</Arn><AssumedRoleId>AROA:sluice</AssumedRoleId></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""")


Handler.sts = sts

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print(f"kinesis fault server on 127.0.0.1:{port}", flush=True)
server.serve_forever()
