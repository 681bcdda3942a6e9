// The kafkajs side of tests/compat/test_kafkajs.py. Prints one JSON line with what happened.
//
//   node client.js produce BOOTSTRAP TOPIC COUNT FIRST
//     an idempotent producer sends values FIRST..FIRST+COUNT-1, ten per send, acks=all;
//     prints {"offsets": [[partition, baseOffset], ...]}.
//   node client.js consume BOOTSTRAP TOPIC GROUP COUNT
//     a member of GROUP consumes from the earliest offset (or the group's commits) until COUNT
//     messages arrived, commits them, leaves; prints {"values": [...], "partitions": [...]}.
"use strict";

const { Kafka, logLevel } = require("kafkajs");

const TIMEOUT_MS = 60000;

function client(bootstrap) {
  return new Kafka({
    clientId: "cairn-compat-kafkajs",
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    retry: { retries: 8, initialRetryTime: 200 },
  });
}

async function produce(bootstrap, topic, count, first) {
  const producer = client(bootstrap).producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const offsets = [];
  try {
    for (let sent = 0; sent < count; sent += 10) {
      const messages = [];
      for (let i = sent; i < Math.min(sent + 10, count); i++) {
        const value = String(first + i);
        messages.push({ key: value, value });
      }
      const answers = await producer.send({ topic, messages, acks: -1, timeout: TIMEOUT_MS });
      for (const answer of answers) {
        offsets.push([answer.partition, Number(answer.baseOffset)]);
      }
    }
  } finally {
    await producer.disconnect();
  }
  return { offsets };
}

async function consume(bootstrap, topic, group, count) {
  const consumer = client(bootstrap).consumer({
    groupId: group,
    sessionTimeout: 10000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  const values = [];
  const partitions = new Set();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${values.length} of ${count} messages in time`)),
        TIMEOUT_MS,
      );
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            values.push(message.value.toString());
            partitions.add(partition);
            const next = (BigInt(message.offset) + 1n).toString();
            await consumer.commitOffsets([{ topic, partition, offset: next }]);
            if (values.length >= count) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return { values, partitions: [...partitions].sort() };
}

async function main() {
  const [command, bootstrap, topic, ...rest] = process.argv.slice(2);
  let result;
  if (command === "produce") {
    result = await produce(bootstrap, topic, Number(rest[0]), Number(rest[1]));
  } else if (command === "consume") {
    result = await consume(bootstrap, topic, rest[0], Number(rest[1]));
  } else {
    throw new Error(`unknown command ${command}`);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
