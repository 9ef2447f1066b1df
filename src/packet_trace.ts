/**
 * `--log-level debug` packet tracing, like `mosquitto -v`: one line per packet with the client
 * id, the packet type, topic, QoS, flags and sizes. Never passwords, never payloads: a CONNECT
 * says whether it carried a password, a PUBLISH how many payload bytes it had.
 *
 * Callers check `ctx.trace` (fixed at construction) before calling, so tracing costs one
 * boolean test per packet when it is off.
 *
 * @module
 */
import type { Packet } from "./codec/packet.ts";
import type { Logger } from "./logger.ts";

const NAMES = [
  "reserved",
  "CONNECT",
  "CONNACK",
  "PUBLISH",
  "PUBACK",
  "PUBREC",
  "PUBREL",
  "PUBCOMP",
  "SUBSCRIBE",
  "SUBACK",
  "UNSUBSCRIBE",
  "UNSUBACK",
  "PINGREQ",
  "PINGRESP",
  "DISCONNECT",
  "AUTH",
];

const utf8 = new TextDecoder();

/** A received packet, as `Received PUBLISH from "c1" (d0, q1, r0, m7, 'a/b', … (5 bytes))`. */
export function traceIn(log: Logger, clientId: string, packet: Packet): void {
  const who = JSON.stringify(packet.type === "connect" ? packet.clientId : clientId);
  switch (packet.type) {
    case "connect": {
      const will = packet.will === undefined
        ? ""
        : `, will q${packet.will.qos} r${
          packet.will.retain ? 1 : 0
        } '${packet.will.topic}' (${packet.will.payload.length} bytes)`;
      const user = packet.username === undefined ? "" : `, u'${packet.username}'`;
      const password = packet.password === undefined ? "" : ", password given";
      log.debug(
        `Received CONNECT from ${who} (p${packet.protocolLevel}, c${
          packet.cleanSession ? 1 : 0
        }, ` +
          `k${packet.keepAlive}${user}${password}${will})`,
      );
      return;
    }
    case "publish":
      log.debug(
        `Received PUBLISH from ${who} (d${packet.dup ? 1 : 0}, q${packet.qos}, ` +
          `r${packet.retain ? 1 : 0}, m${packet.packetId ?? 0}, '${packet.topic}', … ` +
          `(${packet.payload.length} bytes))`,
      );
      return;
    case "subscribe":
      log.debug(
        `Received SUBSCRIBE from ${who} (m${packet.packetId}: ${
          packet.subscriptions.map((s) => `'${s.topicFilter}' q${s.qos}`).join(", ")
        })`,
      );
      return;
    case "unsubscribe":
      log.debug(
        `Received UNSUBSCRIBE from ${who} (m${packet.packetId}: ${
          packet.topicFilters.map((f) => `'${f}'`).join(", ")
        })`,
      );
      return;
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      log.debug(`Received ${packet.type.toUpperCase()} from ${who} (m${packet.packetId})`);
      return;
    default:
      log.debug(`Received ${packet.type.toUpperCase()} from ${who}`);
  }
}

/** A packet about to be queued for the wire, read back from its bytes (the first packet of them). */
export function traceOut(
  log: Logger,
  clientId: string,
  bytes: Uint8Array,
  packetId = 0,
  payloadLength = -1,
): void {
  const who = JSON.stringify(clientId);
  const type = bytes[0] >> 4;
  let at = 1;
  let remaining = 0;
  for (let shift = 0; at < bytes.length && shift < 28; shift += 7) {
    const b = bytes[at++];
    remaining += (b & 0x7f) << shift;
    if ((b & 0x80) === 0) break;
  }
  const name = NAMES[type] ?? "?";
  const u16 = (i: number) => ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  switch (type) {
    case 3: {
      const flags = bytes[0] & 0x0f;
      const qos = (flags >> 1) & 3;
      const topicLength = u16(at);
      const topic = utf8.decode(bytes.subarray(at + 2, at + 2 + topicLength));
      const payload = payloadLength >= 0
        ? payloadLength
        : remaining - 2 - topicLength - (qos > 0 ? 2 : 0);
      log.debug(
        `Sending PUBLISH to ${who} (d${(flags >> 3) & 1}, q${qos}, r${flags & 1}, ` +
          `m${
            qos > 0 ? packetId || u16(at + 2 + topicLength) : 0
          }, '${topic}', … (${payload} bytes))`,
      );
      return;
    }
    case 2:
      log.debug(`Sending CONNACK to ${who} (${bytes[at] ?? 0}, ${bytes[at + 1] ?? 0})`);
      return;
    case 9: {
      const codes = Array.from(bytes.subarray(at + 2, at + remaining));
      log.debug(`Sending SUBACK to ${who} (m${u16(at)}: ${codes.join(", ")})`);
      return;
    }
    case 4:
    case 5:
    case 6:
    case 7:
    case 11:
      log.debug(`Sending ${name} to ${who} (m${u16(at)})`);
      return;
    default:
      log.debug(`Sending ${name} to ${who}`);
  }
}
