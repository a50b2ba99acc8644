// Package edge is watershed's ingest edge: the HTTP endpoint that devices
// send their packages to, and that writes each accepted package, unchanged,
// to the raw topic of the pipeline.
//
// # Contract
//
// POST /v1/packages carries one package as its body and
// "Authorization: Bearer TOKEN", where TOKEN is Token(secret, device_id):
// the lowercase hex HMAC-SHA256 of the package's device_id in decimal ASCII,
// keyed by the edge's device secret (the current one or, during a rotation,
// the previous one). The check is stateless: no lookup per request.
//
// The edge reads the body (at most MaxPackageBytes, enforced while
// reading), then runs PROTOCOL.md's package checks 1 to 4, and answers:
//
//	202 {"status":"accepted"}  the package is in the raw topic, acknowledged by all in-sync replicas
//	400 {"error":REASON}       checks 1-2 failed: truncated, bad_magic, unsupported_version, header_crc
//	                           (also "bad_request" when the request body could not be read)
//	401 {"error":"unauthorized"} the token is missing, wrong, or for another device_id
//	413 {"error":"too_large"}  body_len over 1,048,576, or a body longer than MaxPackageBytes;
//	                           nothing is written
//	422 {"error":REASON}       authenticated, but checks 3-4 failed (bad_flags, zero_device,
//	                           bad_count, truncated, trailing_bytes); the package was written
//	                           to the dead-letter topic as a records.Envelope first
//	429 {"error":"overloaded"} the in-flight byte budget is spent; with Retry-After
//	429 {"error":"rate_limited"} the device is over Options.DeviceRate; with a Retry-After
//	                           of the seconds until its token bucket holds a token again
//	503 {"error":"unavailable"} Kafka did not acknowledge in time, or the edge is closing;
//	                           with Retry-After
//
// A missing Authorization header (401), a Content-Length over
// MaxPackageBytes (413) and a spent byte budget (429) are answered before
// the body is read; otherwise the order is: read the bounded body, checks
// 1-2 (400), the token for the header's device_id (401), the device's rate
// limit (429), checks 3-4 (413 or 422), and the produce (202 or 503). The
// rate limit comes after the token, so that requests with a wrong token
// never spend a device's bucket, and a stolen token spends only its own
// device's. A record whose wait timed out may
// still reach Kafka later; the device retries, and the pipeline's dedupe
// drops the copy.
//
// # Records
//
// The raw record's key is the device_id in decimal, its value the package
// bytes as received, and it carries two headers: HeaderReceivedMs (the
// receive time in Unix milliseconds, decimal ASCII; read it back with
// ReceivedAt) and HeaderEdgeID. Records are placed with
// topology.NewPartitioner, the partitioner goka assumes, and produced with
// topology.Kafka.ProducerConfig (acks from all in-sync replicas,
// idempotent). A dead-lettered package is a records.Envelope with Stage
// "edge", the same key, the same headers, Topic set to the raw topic and
// Partition and Offset -1.
//
// # Metrics
//
// The edge registers these on Options.Registerer:
//
//	watershed_edge_requests_total{code}          counter: answered requests by HTTP status code
//	watershed_edge_rejected_total{reason}        counter: requests not answered 202, by reason: a
//	                                             protocol reason word, or missing_token, bad_token,
//	                                             overloaded, rate_limited, unavailable, bad_request
//	watershed_edge_inflight_bytes                gauge: request-body (or dead-letter envelope) bytes
//	                                             held, from reading until Kafka answered for them
//	watershed_edge_produce_duration_seconds      histogram: from handing a record to the producer to
//	                                             Kafka's answer (raw and dead-letter records)
//	watershed_edge_package_bytes                 histogram: sizes of the request bodies read
//	watershed_edge_rate_limited_total            counter: authenticated requests answered 429 because
//	                                             their device was over its rate
//	watershed_edge_rate_limiter_devices          gauge: devices whose token buckets are held
//
// # Rate limit
//
// With Options.DeviceRate set, each device id has a token bucket of
// Options.DeviceBurst packages refilled at DeviceRate a second. The buckets
// take about 64 bytes a device, for at most Options.MaxRateLimitedDevices
// devices (64 MiB at the default): refilled buckets are dropped first, then
// arbitrary ones, which only gives those devices a fresh burst.
package edge
