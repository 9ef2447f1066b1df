/**
 * Protocol violations close the connection in both versions, 5.0 naming the reason first
 * ([MQTT-4.8.0-1] in 3.1.1, [MQTT-4.13.1-1] in 5.0): acknowledgements that do not fit the packet
 * id's state. Looped over protocol levels 4 and 5.
 *
 * @module
 */
import { expectDisconnectOrMosquittoClose, startBroker } from "./_harness.ts";
import { puback, pubcomp, pubrec, RC, subscribe, subscribe5 } from "./_raw.ts";
import type { RawClient } from "./_raw.ts";

/** A subscriber that has just been sent one message at `qos`; returns it and the packet id. */
async function delivered(
  b: Awaited<ReturnType<typeof startBroker>>,
  version: number,
  qos: 1 | 2,
): Promise<[RawClient, number]> {
  const sub = await b.connectV(version, { clientId: `viol-${version}` }, "sub");
  await sub.send(
    version === 5 ? subscribe5(1, [["viol/t", { qos }]]) : subscribe(1, [["viol/t", qos]]),
  );
  await sub.nextPacket(); // SUBACK
  const pub = await b.connect({ clientId: `viol-pub-${version}` }, "pub");
  await pub.publish({ topic: "viol/t", qos, packetId: 1, payload: "x" });
  const p = await sub.nextPacket();
  const topicLength = (p.body[0] << 8) | p.body[1];
  return [sub, (p.body[2 + topicLength] << 8) | p.body[3 + topicLength]];
}

const wrongAcks: [string, 1 | 2, (id: number) => Uint8Array][] = [
  ["PUBREC for a QoS 1 message", 1, pubrec],
  ["PUBCOMP for a QoS 1 message", 1, pubcomp],
  ["PUBACK for a QoS 2 message", 2, puback],
  ["PUBCOMP before PUBREL (for a QoS 2 message not yet PUBRECed)", 2, pubcomp],
];
for (const version of [4, 5]) {
  for (const [name, qos, ack] of wrongAcks) {
    Deno.test(
      `violations ${version === 5 ? "5.0" : "3.1.1"}: ${name} closes the connection${
        version === 5 ? " with DISCONNECT 0x82" : ""
      } [MQTT-4.8.0-1]${version === 5 ? " [MQTT-4.13.1-1]" : ""}`,
      async () => {
        await using b = await startBroker();
        const [sub, id] = await delivered(b, version, qos);
        await sub.send(ack(id));
        // mosquitto 2.0.11 closes a 5.0 connection here without a DISCONNECT.
        if (version === 5) await expectDisconnectOrMosquittoClose(sub, RC.PROTOCOL_ERROR);
        else await sub.expectClosed();
      },
    );
  }
  Deno.test(
    `violations ${
      version === 5 ? "5.0" : "3.1.1"
    }: the right acknowledgements keep the connection open (control)`,
    async () => {
      await using b = await startBroker();
      const [sub, id] = await delivered(b, version, 1);
      await sub.send(puback(id));
      await sub.expectNothing();
    },
  );
}
