package edge

import "github.com/watershed-io/watershed/ingest"

// Record header names the edge writes on every raw and dead-lettered
// record: the pipeline's contract, defined in package ingest.
const (
	// HeaderReceivedMs holds the time the edge received the package (see
	// ingest.HeaderReceivedMs; read it back with ingest.ReceivedAt).
	HeaderReceivedMs = ingest.HeaderReceivedMs
	// HeaderEdgeID holds the id of the edge replica that received the
	// package.
	HeaderEdgeID = ingest.HeaderEdgeID
)
