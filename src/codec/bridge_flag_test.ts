import assert from "node:assert/strict";
import { Decoder } from "./decoder.ts";
import { encodePacket } from "./encoder.ts";
import type { ConnectPacket } from "./packet.ts";

function decodeOne(bytes: Uint8Array): ConnectPacket {
  const d = new Decoder({ maxPacketSize: 1024 });
  d.push(bytes);
  const p = d.next();
  assert.equal(p?.type, "connect");
  return p as ConnectPacket;
}

for (const [name, level] of [["MQTT", 4], ["MQIsdp", 3], ["MQTT", 5]] as const) {
  Deno.test(`CONNECT ${name} ${level} with mosquitto's bridge flag: level | 0x80 both ways`, () => {
    const packet: ConnectPacket = {
      type: "connect",
      protocolName: name,
      protocolLevel: level,
      bridge: true,
      cleanSession: true,
      keepAlive: 30,
      clientId: "br",
    };
    const bytes = encodePacket(packet);
    // Fixed header (2) + protocol name length (2) + name: then the level byte.
    assert.equal(bytes[4 + name.length], level | 0x80);
    const decoded = decodeOne(bytes);
    assert.equal(decoded.protocolLevel, level);
    assert.equal(decoded.bridge, true);
    assert.equal(decoded.clientId, "br");
    const plain = decodeOne(encodePacket({ ...packet, bridge: undefined }));
    assert.equal(plain.protocolLevel, level);
    assert.equal(plain.bridge, undefined);
  });
}
