// Package simulator plays a fleet of version 1 and version 2 devices against
// the ingest edge and keeps the ground truth of what the pipeline should
// make of everything it sent.
//
// It has two layers. A Fleet generates packages deterministically from a
// seed, without any network: each Package carries its bytes, its bearer
// token, the faults injected into it and its Expect (the edge's expected
// answer and, record by record, what the decoder, the validation stage and
// the cross-package dedupe should do with it). A Ledger turns the answers
// the edge actually gave into the Truth: per device and in total, the
// messages that should be stored (by identity, with their values), the
// duplicates, invalid messages and rejected packages, last_seen, firmware,
// the latest reading of each type, and the dead letters by reason.
//
// A Simulator sends a Fleet's packages over HTTP, paced by a token bucket
// and with bounded concurrency, retries on 429 and 503 and transport errors
// like the firmware (Retry-After, exponential backoff with a cap), and
// feeds every answer to its Ledger. Attempts whose fate is unknown (a
// timeout, a 503) are counted as uncertain, and the Truth then gives bounds
// instead of exact numbers for what they may have added.
//
// The truth is computed independently of the pipeline's code: it reuses
// only codecs/protocol's encoders, and derives validity, intra-package
// duplicates and content CRCs from how each package was built.
package simulator
