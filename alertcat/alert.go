package alertcat

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// ErrNotAvro is returned for bytes that are neither an Avro container file
// nor Confluent-framed Avro.
var ErrNotAvro = errors.New("alertcat: not Avro")

// Alert is one Avro record with what is needed to write it back exactly:
// the container header it came in (or the registry schema id it was framed
// with) and its binary encoding, uncompressed.
type Alert struct {
	// Header is set for alerts from container files (ZTF style).
	Header *avrofile.Header
	// SchemaID is set (with Framed) for Confluent-framed alerts.
	Framed   bool
	SchemaID int32
	// SchemaText is the writer schema as written.
	SchemaText string
	Schema     avro.Schema
	Body       []byte
	// Raw is the whole message or file when it held exactly this one alert,
	// passed through untouched when the output is Avro.
	Raw []byte
	// Kafka is where the alert was read from, when it came from Kafka.
	Kafka *KafkaMeta
	// Candid is the top-level candid field, when there is one.
	Candid    int64
	HasCandid bool
	// ObjectID is the top-level objectId field ("" when there is none).
	ObjectID string
	// JD is candidate.jd, the observation's Julian date, when HasJD.
	JD    float64
	HasJD bool
}

// fill copies what the decoder found in the record into a.
func (a *Alert) fill(d *decoder) {
	a.Candid, a.HasCandid = d.candid, d.hasCandid
	a.ObjectID, a.JD, a.HasJD = d.objectID, d.jd, d.hasJD
}

// Key is the Kafka key a copy of a is produced with: the key it was read
// with when it came from Kafka (nil included), else its objectId, else its
// candid in decimal, as the packager keys alerts; nil without either.
func (a *Alert) Key() []byte {
	switch {
	case a.Kafka != nil:
		return a.Kafka.Key
	case a.ObjectID != "":
		return []byte(a.ObjectID)
	case a.HasCandid:
		return strconv.AppendInt(nil, a.Candid, 10)
	}
	return nil
}

// Timestamp is the Kafka timestamp a copy of a is produced with, by mode
// (Config.Timestamps); zero lets the producer stamp the send time.
func (a *Alert) Timestamp(mode string) time.Time {
	switch {
	case mode == TimestampsNow:
	case mode == TimestampsJD && a.HasJD:
		return JDTime(a.JD)
	case a.Kafka != nil:
		return a.Kafka.Timestamp
	}
	return time.Time{}
}

// JDTime converts a Julian date to UTC. It is packager.JDTime (alertcat
// may not import packager): the same expression, so a file copied by cat
// and an alert produced by the packager get the same millisecond.
func JDTime(jd float64) time.Time {
	const unixEpochJD = 2440587.5
	return time.Unix(0, int64((jd-unixEpochJD)*86400e9)).UTC()
}

// KafkaMeta is the position of a record in a Kafka topic.
type KafkaMeta struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       []byte
	Headers   []kgo.RecordHeader
}

// Registry fetches writer schemas for Confluent-framed messages from
// URL/schemas/ids/<id>.
type Registry struct {
	URL    string
	Client *http.Client

	mu    sync.Mutex
	cache map[int32]string
}

// Schema returns the schema text registered under id.
func (r *Registry) Schema(id int32) (string, error) {
	if r == nil || r.URL == "" {
		return "", fmt.Errorf("message is Confluent-framed (schema id %d) but no --registry was given", id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.cache[id]; ok {
		return s, nil
	}
	c := r.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	url := strings.TrimRight(r.URL, "/") + "/schemas/ids/" + strconv.Itoa(int(id))
	resp, err := c.Get(url)
	if err != nil {
		return "", fmt.Errorf("schema registry: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("schema registry: GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	var out struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Schema == "" {
		return "", fmt.Errorf("schema registry: GET %s: no schema in the answer", url)
	}
	if r.cache == nil {
		r.cache = map[int32]string{}
	}
	r.cache[id] = out.Schema
	return out.Schema, nil
}

// Codec reads and writes alerts.
type Codec struct {
	Schemas  *avrofile.Schemas
	Registry *Registry
	Bytes    BytesStyle
}

// Decode splits a Kafka message value or an .avro file into its alerts:
// a container file may hold several, a framed message holds one.
func (c *Codec) Decode(b []byte) ([]*Alert, error) {
	switch {
	case bytes.HasPrefix(b, []byte(avrofile.Magic)):
		return c.decodeContainer(b)
	case len(b) >= 5 && b[0] == 0:
		id := int32(binary.BigEndian.Uint32(b[1:5]))
		text, err := c.Registry.Schema(id)
		if err != nil {
			return nil, err
		}
		a := &Alert{Framed: true, SchemaID: id, SchemaText: text, Body: b[5:], Raw: b}
		if err := c.check(a, true); err != nil {
			return nil, err
		}
		return []*Alert{a}, nil
	}
	n := min(len(b), 8)
	return nil, fmt.Errorf("%w: %d bytes starting % x are neither an Avro container file (Obj\\x01) nor Confluent-framed Avro (0x00 + schema id)", ErrNotAvro, len(b), b[:n])
}

func (c *Codec) decodeContainer(b []byte) ([]*Alert, error) {
	cr, err := avrofile.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var out []*Alert
	for {
		blk, err := cr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		as, err := c.splitBlock(cr.Header, blk)
		if err != nil {
			return nil, err
		}
		out = append(out, as...)
	}
	if len(out) == 1 {
		out[0].Raw = b
	}
	return out, nil
}

// splitBlock cuts a block, as stored, into one alert per record.
func (c *Codec) splitBlock(h *avrofile.Header, blk avrofile.Block) ([]*Alert, error) {
	schema := string(h.Schema())
	sc, err := c.Schemas.Parse(schema)
	if err != nil {
		return nil, err
	}
	if blk.Data, err = avrofile.Decompress(h.Codec(), blk.Data); err != nil {
		return nil, err
	}
	var out []*Alert
	d := decoder{b: blk.Data}
	var scratch []byte
	if blk.Count < 0 || blk.Count > int64(len(blk.Data)) {
		return nil, fmt.Errorf("decode alert: block claims %d records in %d bytes", blk.Count, len(blk.Data))
	}
	for i := int64(0); i < blk.Count; i++ {
		start := d.pos
		d.reset()
		if scratch, err = d.value(scratch[:0], sc, 0); err != nil {
			return nil, fmt.Errorf("decode alert: %w", err)
		}
		a := &Alert{Header: h, SchemaText: schema, Schema: sc, Body: blk.Data[start:d.pos]}
		a.fill(&d)
		out = append(out, a)
	}
	if d.pos != len(blk.Data) {
		return nil, fmt.Errorf("decode alert: %d bytes left over in a block of %d records", len(blk.Data)-d.pos, blk.Count)
	}
	return out, nil
}

// check parses a's schema and decodes its body once, to fail early on
// bytes that do not fit the schema and to find the candid.
func (c *Codec) check(a *Alert, whole bool) error {
	sc, err := c.Schemas.Parse(a.SchemaText)
	if err != nil {
		return err
	}
	a.Schema = sc
	d := decoder{b: a.Body}
	if _, err := d.value(nil, sc, 0); err != nil {
		return fmt.Errorf("decode alert: %w", err)
	}
	if whole && d.pos != len(a.Body) {
		return fmt.Errorf("decode alert: %d bytes left over", len(a.Body)-d.pos)
	}
	a.fill(&d)
	return nil
}

// Value returns a as a Kafka message value: a one-alert container file, or
// Confluent framing when it came framed.
func (a *Alert) Value() ([]byte, error) {
	if a.Raw != nil {
		return a.Raw, nil
	}
	if a.Framed {
		b := make([]byte, 5, 5+len(a.Body))
		binary.BigEndian.PutUint32(b[1:], uint32(a.SchemaID))
		return append(b, a.Body...), nil
	}
	h := a.Header
	if h == nil {
		h = avrofile.NewHeader([]byte(a.SchemaText))
		a.Header = h
	}
	return appendBlock(avrofile.AppendHeader(nil, h), h, a.Body)
}

// appendBlock appends a block holding the one record body, compressed
// with h's codec.
func appendBlock(dst []byte, h *avrofile.Header, body []byte) ([]byte, error) {
	data, err := avrofile.Compress(h.Codec(), body)
	if err != nil {
		return nil, err
	}
	return avrofile.AppendBlock(dst, 1, data, h.Sync), nil
}

// AppendJSON appends a as one JSON object: "$avro" (what it takes to write
// the alert back bytewise), "$kafka" (where it was read, if from Kafka),
// then the record's fields in schema order.
func (c *Codec) AppendJSON(dst []byte, a *Alert) ([]byte, error) {
	dst = append(dst, `{"$avro":{`...)
	if a.Framed {
		dst = append(dst, `"schema_id":`...)
		dst = strconv.AppendInt(dst, int64(a.SchemaID), 10)
	} else {
		h := a.Header
		dst = append(dst, `"sync":"`...)
		dst = hex.AppendEncode(dst, h.Sync[:])
		dst = append(dst, `","meta":[`...)
		for i, e := range h.Meta {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			dst = appendString(dst, e.Key)
			dst = append(dst, ',')
			switch e.Key {
			case avrofile.KeySchema:
				// Written once, below, as text.
				dst = append(dst, "null"...)
			case avrofile.KeyCodec:
				dst = appendString(dst, string(e.Value))
			default:
				dst = appendBytes(dst, e.Value, Base64)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"schema":`...)
	dst = appendString(dst, a.SchemaText)
	dst = append(dst, '}')
	if k := a.Kafka; k != nil {
		dst = append(dst, `,"$kafka":{"topic":`...)
		dst = appendString(dst, k.Topic)
		dst = fmt.Appendf(dst, `,"partition":%d,"offset":%d,"timestamp":"%s"`, k.Partition, k.Offset, k.Timestamp.UTC().Format(time.RFC3339Nano))
		if k.Key != nil {
			dst = append(dst, `,"key":`...)
			dst = appendBytes(dst, k.Key, Base64)
		}
		if len(k.Headers) > 0 {
			dst = append(dst, `,"headers":[`...)
			for i, h := range k.Headers {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, '[')
				dst = appendString(dst, h.Key)
				dst = append(dst, ',')
				if h.Value == nil {
					dst = append(dst, "null"...)
				} else {
					dst = appendBytes(dst, h.Value, Base64)
				}
				dst = append(dst, ']')
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	d := decoder{b: a.Body, style: c.Bytes}
	val, err := d.value(nil, a.Schema, 0)
	if err != nil {
		return nil, fmt.Errorf("decode alert: %w", err)
	}
	if _, ok := a.Schema.(*avro.RecordSchema); ok && len(val) > 2 {
		dst = append(dst, ',')
		dst = append(dst, val[1:]...)
		return dst, nil
	}
	dst = append(dst, `,"$value":`...)
	dst = append(dst, val...)
	return append(dst, '}'), nil
}

// FromJSON builds an alert from one JSON object written by AppendJSON.
// Without "$avro", fallbackSchema (the text of --schema) is used.
func (c *Codec) FromJSON(v any, fallbackSchema string) (*Alert, error) {
	obj, ok := v.(*object)
	if !ok {
		return nil, fmt.Errorf("want a JSON object per alert, got %s", jsonKind(v))
	}
	a := &Alert{}
	meta, hasMeta := obj.get("$avro")
	if m, ok := meta.(*object); ok && hasMeta {
		if t, ok := m.vals["schema"].(string); ok {
			a.SchemaText = t
		}
		if id, ok := m.vals["schema_id"].(json.Number); ok {
			n, err := strconv.ParseInt(string(id), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("$avro.schema_id: %w", err)
			}
			a.Framed, a.SchemaID = true, int32(n)
			if a.SchemaText == "" {
				t, err := c.Registry.Schema(a.SchemaID)
				if err != nil {
					return nil, err
				}
				a.SchemaText = t
			}
		} else {
			h, err := headerFromJSON(m, a.SchemaText)
			if err != nil {
				return nil, err
			}
			a.Header = h
		}
	} else if fallbackSchema != "" {
		a.SchemaText = fallbackSchema
	} else {
		return nil, errors.New(`JSON alert has no "$avro" schema and no --schema was given`)
	}
	if a.SchemaText == "" {
		return nil, errors.New(`"$avro" has no schema`)
	}
	sc, err := c.Schemas.Parse(a.SchemaText)
	if err != nil {
		return nil, err
	}
	a.Schema = sc
	e := encoder{}
	var val any = obj
	if _, ok := sc.(*avro.RecordSchema); !ok {
		val = obj.vals["$value"]
	}
	if err := e.value(sc, val, "$"); err != nil {
		return nil, err
	}
	a.Body = e.b
	if k, ok := obj.vals["$kafka"].(*object); ok {
		a.Kafka = kafkaFromJSON(k)
	}
	return a, c.check(a, true)
}

func headerFromJSON(m *object, schema string) (*avrofile.Header, error) {
	if schema == "" {
		return nil, errors.New(`"$avro" has no schema`)
	}
	h := &avrofile.Header{}
	if s, ok := m.vals["sync"].(string); ok {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != avrofile.SyncSize {
			return nil, errors.New(`"$avro".sync must be 32 hex digits`)
		}
		copy(h.Sync[:], b)
	} else {
		return avrofile.NewHeader([]byte(schema)), nil
	}
	entries, _ := m.vals["meta"].([]any)
	for _, e := range entries {
		kv, ok := e.([]any)
		if !ok || len(kv) != 2 {
			return nil, errors.New(`"$avro".meta must hold [key, value] pairs`)
		}
		k, _ := kv[0].(string)
		switch k {
		case avrofile.KeySchema:
			h.Meta = append(h.Meta, avrofile.MetaEntry{Key: k, Value: []byte(schema)})
		case avrofile.KeyCodec:
			s, _ := kv[1].(string)
			h.Meta = append(h.Meta, avrofile.MetaEntry{Key: k, Value: []byte(s)})
		default:
			b, err := jsonBytes(kv[1])
			if err != nil {
				return nil, fmt.Errorf(`"$avro".meta %q: %w`, k, err)
			}
			h.Meta = append(h.Meta, avrofile.MetaEntry{Key: k, Value: b})
		}
	}
	if _, ok := h.Get(avrofile.KeySchema); !ok {
		h.Meta = append([]avrofile.MetaEntry{{Key: avrofile.KeySchema, Value: []byte(schema)}}, h.Meta...)
	}
	return h, nil
}

func kafkaFromJSON(o *object) *KafkaMeta {
	k := &KafkaMeta{}
	k.Topic, _ = o.vals["topic"].(string)
	if n, ok := o.vals["partition"].(json.Number); ok {
		p, _ := n.Int64()
		k.Partition = int32(p)
	}
	if n, ok := o.vals["offset"].(json.Number); ok {
		k.Offset, _ = n.Int64()
	}
	if s, ok := o.vals["timestamp"].(string); ok {
		k.Timestamp, _ = time.Parse(time.RFC3339Nano, s)
	}
	if s, ok := o.vals["key"].(string); ok {
		k.Key, _ = base64.StdEncoding.DecodeString(s)
	}
	hs, _ := o.vals["headers"].([]any)
	for _, h := range hs {
		kv, ok := h.([]any)
		if !ok || len(kv) != 2 {
			continue
		}
		rh := kgo.RecordHeader{}
		rh.Key, _ = kv[0].(string)
		if s, ok := kv[1].(string); ok {
			rh.Value, _ = base64.StdEncoding.DecodeString(s)
			if rh.Value == nil {
				rh.Value = []byte{}
			}
		}
		k.Headers = append(k.Headers, rh)
	}
	return k
}
