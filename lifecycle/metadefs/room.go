package metadefs

import (
	"encoding/json"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv"
)

// A namespace holds at most maxRecords records in at most maxBytes of
// keys and JSON. Glance sets no bound; glimpse does because every change
// to a namespace, its rename and its delete included, is one transaction,
// and a registry transaction is bounded on every engine (kv.MaxTxnOps keys,
// kv.MaxTxnBytes: what one etcd request takes). A rename deletes and
// writes every record, so a namespace holds at most half of MaxTxnOps,
// less a margin for the namespace and resource type keys. Glance's largest
// definition file has 22 records in 18 KB.
const (
	maxRecords = (kv.MaxTxnOps - 8) / 2
	maxBytes   = 256 << 10
)

// room is what a namespace uses, kept up to date as a transaction writes.
type room struct{ records, bytes int }

// roomOf measures the namespace's records, leaving out those of kind
// except (which the caller is about to replace); "" leaves out none.
func roomOf(tx kv.Txn, ns string, except meta.MetadefKind) (*room, error) {
	rm := &room{records: 1}
	if raw, err := tx.Get(meta.MetadefNamespaceKey(ns)); err == nil {
		rm.bytes += len(meta.MetadefNamespaceKey(ns)) + len(raw)
	}
	for _, k := range namespaceKinds {
		if k == except {
			continue
		}
		err := tx.Scan(meta.MetadefMemberKey(k, ns, ""), func(key, value []byte) error {
			rm.records++
			rm.bytes += len(key) + len(value)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return rm, nil
}

// put stores v under key, counting added records (1 for a new one, 0 for
// a replacement, whose old size is not taken back: a bound, not a tally).
func (rm *room) put(tx kv.Txn, ns string, key []byte, v any, added int) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rm.records += added
	rm.bytes += len(key) + len(raw)
	if rm.records > maxRecords || rm.bytes > maxBytes {
		return refuse(lifecycle.ErrTooLarge, "Namespace %s would hold more than %d records or %d bytes of definitions.", ns, maxRecords, maxBytes)
	}
	return tx.Set(key, raw)
}
