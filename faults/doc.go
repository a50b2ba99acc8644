// Package faults runs the watershed pipeline as separate operating-system
// processes against real Kafka and Cassandra and injects the faults that
// production brings. Its main integration test, TestIntegrationFaultsCluster
// (issue 13, docs/reliability.md), runs on the cluster of
// `scripts/infra/infra.sh start cluster` (3 KRaft brokers with replication 3
// and min.insync.replicas 2, 2 Cassandra nodes with a keyspace of
// replication 2) with every connection of the pipeline's processes passing
// an in-process toxiproxy proxy: brokers are killed with SIGKILL (a raw
// partition's leader, the active controller), the network between the
// processes and the servers gets latency, connection resets and a
// blackhole, a Cassandra node is killed (partial outage) and later both are
// stopped, replicas are killed and one stopped with SIGTERM, and an edge is
// killed with requests in flight. Its checks assert what the pipeline
// promises: every answer the one the truth expects, at least 95% of valid
// packages accepted, no message lost, no row the truth does not have, no
// message identity twice in telemetry.normalized or at the sink's write
// calls, each bad record once in the dead-letter topic, view servers that
// answer throughout, no process that died by itself. Other tests: the edge
// while the broker is down, and table recovery times.
//
// The package holds the harness: Proc supervises one process (its own
// process group, restarted when it dies unless it was stopped on purpose),
// Infra kills, stops and resumes the services through infra.sh, Proxies
// runs the toxiproxy proxies and their toxics, Cluster starts the edges,
// the processor replicas and the view servers, Front spreads the
// simulator's requests over the edges and follows those in flight, HTTPView
// reads the view API back into device states for internal/reconcile, and
// ReadNormalized, ReadSinkAudit and DeadLetterCopies count what the topics
// and the sink's audit log hold.
package faults
