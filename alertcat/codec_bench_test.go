package alertcat

import (
	"os"
	"testing"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

func BenchmarkDecodeJSON(b *testing.B) {
	raw, _ := os.ReadFile(boom402)
	c := &Codec{Schemas: avrofile.NewSchemas(0)}
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		as, err := c.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.AppendJSON(nil, as[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSchemaUncached(b *testing.B) {
	raw, _ := os.ReadFile(boom402)
	c := &Codec{Schemas: avrofile.NewSchemas(0)}
	as, _ := c.Decode(raw)
	for i := 0; i < b.N; i++ {
		if _, err := avrofile.ParseSchema([]byte(as[0].SchemaText)); err != nil {
			b.Fatal(err)
		}
	}
}
