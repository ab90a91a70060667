#!/usr/bin/env python3
"""Prepares and reads a Kinesis emulator (moto or MiniStack) for Sluice's end-to-end tests, with boto3.

  kinesis_peer.py setup ENDPOINT STREAM SHARDS
      Creates an IAM user allowed kinesis:*, an access key for it, and STREAM with SHARDS shards;
      prints {"id": ..., "secret": ...}. The IAM calls use a bootstrap key: on moto they must fall
      within INITIAL_NO_AUTH_ACTION_COUNT (4 calls); on MiniStack the root key "test" is accepted.
  kinesis_peer.py read ENDPOINT STREAM ID SECRET
      Prints {"records": [{"shard", "sequence", "partition_key", "data", "predicted_shard"}, ...]}
      with every record of every shard (GetRecords from TRIM_HORIZON), and for each the shard
      whose hash key range holds MD5(partition key) — where Kinesis must have put it.
"""
import hashlib
import json
import sys
import time
import uuid

import boto3

REGION = "us-east-1"


def client(service, endpoint, key_id, secret):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key_id,
                        aws_secret_access_key=secret)


def setup(endpoint, stream, shards):
    iam = client("iam", endpoint, "test", "test")
    user = f"sluice-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = iam.create_policy(PolicyName=f"{user}-kinesis", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}]}))
    iam.attach_user_policy(UserName=user, PolicyArn=policy["Policy"]["Arn"])
    key = iam.create_access_key(UserName=user)["AccessKey"]
    kinesis = client("kinesis", endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    for _ in range(100):
        if kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))


def read(endpoint, stream, key_id, secret):
    kinesis = client("kinesis", endpoint, key_id, secret)
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    ranges = [(s["ShardId"], int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
              for s in shards]

    def predicted(partition_key):
        h = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
        return next(shard for shard, start, end in ranges if start <= h <= end)

    records = []
    for shard, _, _ in ranges:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for r in page["Records"]:
                records.append({"shard": shard, "sequence": r["SequenceNumber"], "partition_key": r["PartitionKey"],
                                "data": r["Data"].decode("utf-8", "replace"),
                                "predicted_shard": predicted(r["PartitionKey"])})
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    print(json.dumps({"records": records}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "setup":
        setup(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif command == "read":
        read(*sys.argv[2:6])
    else:
        sys.exit(f"unknown command {command}")
