/** The broker's version, as `--version` and `$SYS/broker/version` report it. */
export const VERSION = "0.1.0";
