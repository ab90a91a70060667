#!/usr/bin/env python3
"""Writes the SigV4 signer's expected values, computed by botocore (a signer nobody here wrote).

For each case: the request, the credentials and a fixed timestamp go in; botocore's canonical
request, string to sign, signature and Authorization header come out. The Swift tests
(connectors/kinesis/Tests) sign the same inputs and must produce exactly these strings.

usage: sigv4_fixtures.py > connectors/kinesis/Tests/Fixtures/sigv4.json
"""
import json

import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PUT_RECORDS = json.dumps({"StreamName": "events", "Records": [{"Data": "aGVsbG8=", "PartitionKey": "k1"}]},
                         separators=(",", ":"))
KINESIS_HEADERS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.PutRecords"}

CASES = [
    {"name": "put-records-default-port", "method": "POST", "url": "https://kinesis.us-east-1.amazonaws.com/",
     "headers": KINESIS_HEADERS, "body": PUT_RECORDS, "region": "us-east-1", "service": "kinesis"},
    {"name": "host-with-port", "method": "POST", "url": "http://127.0.0.1:4566/",
     "headers": KINESIS_HEADERS, "body": PUT_RECORDS, "region": "eu-west-1", "service": "kinesis"},
    {"name": "empty-body", "method": "GET", "url": "https://sts.amazonaws.com/", "headers": {},
     "body": "", "region": "us-east-1", "service": "sts"},
    {"name": "query-string-encoding", "method": "GET", "url": "https://example.amazonaws.com/a/b%20c",
     "params": [["Param2", "value two"], ["Param1", "a/b+c=d&e"], ["b", "~tilde_-."], ["A", "ünïcode"], ["empty", ""]],
     "headers": {}, "body": "", "region": "us-west-2", "service": "execute-api"},
    {"name": "header-value-whitespace", "method": "POST", "url": "https://kinesis.us-east-1.amazonaws.com/",
     "headers": dict(KINESIS_HEADERS, **{"X-Custom": "  a   b \t c  ", "X-Another": "one two"}),
     "body": PUT_RECORDS, "region": "us-east-1", "service": "kinesis"},
    {"name": "session-token", "method": "POST", "url": "https://kinesis.ap-southeast-2.amazonaws.com/",
     "headers": KINESIS_HEADERS, "body": PUT_RECORDS, "region": "ap-southeast-2", "service": "kinesis",
     "token": "FQoGZXIvYXdzEJr//////////wEaDOuNKhi+session/token=="},
]

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TIMESTAMP = "20261127T120000Z"

fixtures = []
for case in CASES:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, case.get("token"))
    auth = SigV4Auth(credentials, case["service"], case["region"])
    request = AWSRequest(method=case["method"], url=case["url"], headers=dict(case["headers"]),
                         data=case["body"].encode(), params=[tuple(p) for p in case.get("params") or []])
    request.context["timestamp"] = TIMESTAMP
    auth._modify_request_before_signing(request)
    canonical_request = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical_request)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    fixtures.append({
        "name": case["name"], "method": case["method"], "url": case["url"], "params": case.get("params") or [],
        "headers": [[k, v] for k, v in case["headers"].items()], "body": case["body"],
        "region": case["region"], "service": case["service"], "session_token": case.get("token"),
        "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "timestamp": TIMESTAMP,
        "canonical_request": canonical_request, "string_to_sign": string_to_sign, "signature": signature,
        "authorization": request.headers["Authorization"],
    })
print(json.dumps({"generator": f"botocore {botocore.__version__}", "cases": fixtures}, indent=2, ensure_ascii=False))
