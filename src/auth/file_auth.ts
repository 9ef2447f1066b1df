/**
 * The broker's deciding hooks backed by a mosquitto password file and ACL file, reloadable (for
 * SIGHUP) without dropping the rules in force when a new file is broken.
 *
 * @module
 */

import { CONNACK } from "../codec/packet.ts";
import type {
  AuthenticateHook,
  AuthorizeForwardHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  ClientInfo,
} from "../hooks.ts";
import { Acl, type ClientAcl } from "./acl.ts";
import { PasswordFile } from "./password_file.ts";

/** Where {@link FileAuth} reads its rules, and whether clients without a user name may connect. */
export interface FileAuthOptions {
  /** A mosquitto password file (`mosquitto_passwd` format). Without it user names are not checked. */
  passwordFile?: string;
  /** A mosquitto ACL file. Without it every connected client may publish and subscribe anywhere. */
  aclFile?: string;
  /**
   * Whether clients without a user name may connect. Default: `false` when a password file is
   * given, `true` otherwise. `false` without a password file refuses every client (as mosquitto).
   */
  allowAnonymous?: boolean;
}

/** What {@link FileAuth.reload} reports. */
export interface ReloadResult {
  /** `true` when the new files are in force. */
  ok: boolean;
  /** Why the files were not reloaded (naming the file and line); the old rules stay. */
  error?: string;
}

/** Most cached per-client ACLs by (user name, client id) before the cache is emptied. */
const MAX_CACHED_CLIENTS = 10_000;

interface CachedAcl {
  username: string | undefined;
  clientId: string;
  acl: ClientAcl;
}

/**
 * Authentication and authorisation from mosquitto-format files.
 *
 * CONNECT decisions: a user name with a wrong password, or unknown, gets CONNACK 0x04 (bad user
 * name or password); a client without a user name gets 0x05 (not authorized) unless anonymous
 * clients are allowed. Without a password file user names are taken as given (they still select
 * the ACL's user section), as in mosquitto.
 *
 * The hooks are bound properties: pass them to the broker as they are.
 *
 * @example Wire into the broker, reload on SIGHUP
 * ```ts ignore
 * import { Broker } from "../../mod.ts";
 * import { FileAuth } from "./file_auth.ts";
 *
 * const auth = await FileAuth.load({ passwordFile: "passwords", aclFile: "acl" });
 * const broker = new Broker({
 *   authenticate: auth.authenticate,
 *   authorizePublish: auth.authorizePublish,
 *   authorizeSubscribe: auth.authorizeSubscribe,
 *   authorizeForward: auth.authorizeForward,
 * });
 * Deno.addSignalListener("SIGHUP", () => {
 *   auth.reload().then((r) => r.ok || console.error(r.error));
 * });
 * ```
 */
export class FileAuth {
  #options: FileAuthOptions;
  #passwords: PasswordFile | undefined;
  #acl: Acl | undefined;
  #byClient = new WeakMap<ClientInfo, CachedAcl>();
  #byKey = new Map<string, ClientAcl>();

  private constructor(options: FileAuthOptions, passwords?: PasswordFile, acl?: Acl) {
    this.#options = { ...options };
    this.#passwords = passwords;
    this.#acl = acl;
  }

  /**
   * Reads the files named in the options.
   *
   * @param options The files and the anonymous setting.
   * @returns The hooks, ready to use.
   * @throws {TypeError} For an option of the wrong type.
   * @throws {SyntaxError} For a bad file, naming the file and line.
   * @throws {Deno.errors.NotFound} and other read errors (their messages name the file).
   */
  static async load(options: FileAuthOptions): Promise<FileAuth> {
    for (const name of ["passwordFile", "aclFile"] as const) {
      const value = options[name];
      if (value !== undefined && (typeof value !== "string" || value === "")) {
        throw new TypeError(`Invalid option ${name}: expected a file path, got ${value}`);
      }
    }
    if (options.allowAnonymous !== undefined && typeof options.allowAnonymous !== "boolean") {
      throw new TypeError(
        `Invalid option allowAnonymous: expected true or false, got ${options.allowAnonymous}`,
      );
    }
    const [passwords, acl] = await readFiles(options);
    return new FileAuth(options, passwords, acl);
  }

  /**
   * Reads the files again. All or nothing: when either file cannot be read or parsed, the rules
   * in force stay and the reason is returned. Connected clients get the new ACL from their next
   * check on; their connections are not re-authenticated.
   *
   * @returns `{ ok: true }`, or `{ ok: false, error }` with the message naming file and line.
   */
  async reload(): Promise<ReloadResult> {
    let files: [PasswordFile | undefined, Acl | undefined];
    try {
      files = await readFiles(this.#options);
    } catch (error) {
      return { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
    [this.#passwords, this.#acl] = files;
    this.#byClient = new WeakMap();
    this.#byKey.clear();
    return { ok: true };
  }

  /** CONNECT: `true`, or CONNACK 0x04 (bad user name or password) or 0x05 (not authorized). */
  authenticate: AuthenticateHook = async ({ username, password }) => {
    const passwords = this.#passwords;
    if (passwords === undefined) {
      return this.#options.allowAnonymous === false ? CONNACK.notAuthorized : true;
    }
    if (username === undefined) {
      return this.#options.allowAnonymous === true ? true : CONNACK.notAuthorized;
    }
    // Hash even without a password, so the answer takes as long as any other.
    const ok = await passwords.verify(username, password ?? new Uint8Array(0));
    return ok && password !== undefined ? true : CONNACK.badUsernameOrPassword;
  };

  /** PUBLISH: write access to the topic. */
  authorizePublish: AuthorizePublishHook = (client, topic) =>
    this.#clientAcl(client)?.canPublish(topic) ?? true;

  /** SUBSCRIBE: a read rule covers the filter and no deny rule does (else SUBACK 0x80). */
  authorizeSubscribe: AuthorizeSubscribeHook = (client, topicFilter) =>
    this.#clientAcl(client)?.canSubscribe(topicFilter) ?? true;

  /** Each delivery (retained messages included): read access to the topic. */
  authorizeForward: AuthorizeForwardHook = (client, topic) =>
    this.#clientAcl(client)?.canRead(topic) ?? true;

  #clientAcl(client: ClientInfo): ClientAcl | undefined {
    const acl = this.#acl;
    if (acl === undefined) return undefined;
    const { username, clientId } = client;
    const cached = this.#byClient.get(client);
    if (cached !== undefined && cached.username === username && cached.clientId === clientId) {
      return cached.acl;
    }
    // In case the broker passes a new ClientInfo per call: a bounded cache by value too.
    const key = username === undefined
      ? `-${clientId}`
      : `${username.length}:${username}${clientId}`;
    let compiled = this.#byKey.get(key);
    if (compiled === undefined) {
      if (this.#byKey.size >= MAX_CACHED_CLIENTS) this.#byKey.clear();
      compiled = acl.forClient(username, clientId);
      this.#byKey.set(key, compiled);
    }
    this.#byClient.set(client, { username, clientId, acl: compiled });
    return compiled;
  }
}

// Which option's file an error of `load`/`reload` came from, kept beside the error (its type and
// message stay those of the read or parse error).
const ERROR_OPTION = new WeakMap<object, "passwordFile" | "aclFile">();

/**
 * Which file a `FileAuth.load` error is about: "passwordFile" or "aclFile"; undefined for an
 * error that is not about one of them (a bad option).
 */
export function fileAuthErrorOption(error: unknown): "passwordFile" | "aclFile" | undefined {
  return typeof error === "object" && error !== null ? ERROR_OPTION.get(error) : undefined;
}

function tagged<T>(option: "passwordFile" | "aclFile", pending: Promise<T>): Promise<T> {
  return pending.catch((error) => {
    if (typeof error === "object" && error !== null) ERROR_OPTION.set(error, option);
    throw error;
  });
}

async function readFiles(
  options: FileAuthOptions,
): Promise<[PasswordFile | undefined, Acl | undefined]> {
  return await Promise.all([
    options.passwordFile === undefined
      ? undefined
      : tagged("passwordFile", PasswordFile.load(options.passwordFile)),
    options.aclFile === undefined ? undefined : tagged("aclFile", Acl.load(options.aclFile)),
  ]);
}
