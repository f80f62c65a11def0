package broker

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// quotaKeyPrefix is followed by the quota entity's key as the listener
// spells it (protocol.QuotaEntity.Key: "user/<name>/client-id/<name>", names
// path-escaped, "<default>" for a default entity). Part of the on-disk
// format; see doc.go.
const quotaKeyPrefix = "quota/"

// ClientQuotas returns every stored client quota: entity key -> quota name
// (producer_byte_rate, consumer_byte_rate) -> value. It implements
// protocol.QuotaStore.
func (b *Broker) ClientQuotas() (map[string]map[string]float64, error) {
	it, err := b.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(quotaKeyPrefix),
		UpperBound: keyPrefixEnd([]byte(quotaKeyPrefix)),
	})
	if err != nil {
		return nil, fmt.Errorf("broker: quotas: %w", err)
	}
	defer it.Close()
	out := map[string]map[string]float64{}
	for it.First(); it.Valid(); it.Next() {
		entity := string(it.Key()[len(quotaKeyPrefix):])
		var values map[string]float64
		if err := json.Unmarshal(it.Value(), &values); err != nil {
			return nil, fmt.Errorf("broker: quota %q: %w", entity, err)
		}
		out[entity] = values
	}
	return out, it.Error()
}

// SetClientQuotas replaces the quotas of one entity, with pebble.Sync; no
// values removes the entity. It implements protocol.QuotaStore.
func (b *Broker) SetClientQuotas(entity string, values map[string]float64) error {
	if entity == "" {
		return fmt.Errorf("broker: quota: empty entity")
	}
	key := []byte(quotaKeyPrefix + entity)
	if len(values) == 0 {
		if err := b.disk.refuseMeta(); err != nil {
			return err
		}
		batch := b.db.NewBatch()
		defer batch.Close()
		if err := batch.Delete(key, nil); err != nil {
			return err
		}
		return commitMeta(b.disk, batch)
	}
	v, err := json.Marshal(values) // map keys sorted: a stable encoding
	if err != nil {
		return err
	}
	return setMeta(b.disk, b.db, key, v)
}
