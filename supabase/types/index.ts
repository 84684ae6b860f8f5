// creditgate's client types: postgres-meta's generated `Database` (creditgate.ts) with each
// RPC's `Returns: Json` replaced by its result interface (results.ts), for
// `createClient<CreditgateDatabase>(...)`. Both source files are regenerated or checked by
// `creditgate types`; this file only combines them.
import type { Database } from "./creditgate"
import type { RpcResults } from "./results"

export type { Database, Json, Tables } from "./creditgate"
export type * from "./results"

type GeneratedFunctions = Database["creditgate"]["Functions"]

/** Fails to compile when RpcResults and the generated functions name different RPCs. */
type Missing = Exclude<keyof GeneratedFunctions, keyof RpcResults>
type Extra = Exclude<keyof RpcResults, keyof GeneratedFunctions>
export const resultsCoverEveryFunction: [Missing, Extra] extends [never, never]
  ? true
  : { functionsWithoutAResultInterface: Missing; interfacesWithoutAFunction: Extra } = true

export type CreditgateDatabase = Omit<Database, "creditgate"> & {
  creditgate: Omit<Database["creditgate"], "Functions"> & {
    Functions: {
      [F in keyof GeneratedFunctions]: Omit<GeneratedFunctions[F], "Returns"> & {
        Returns: F extends keyof RpcResults ? RpcResults[F] : GeneratedFunctions[F]["Returns"]
      }
    }
  }
}

/** A row of creditgate.generations as its owner reads it (select and Realtime). */
export type GenerationRow = Database["creditgate"]["Tables"]["generations"]["Row"]
