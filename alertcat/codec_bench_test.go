package alertcat

import (
	"os"
	"testing"
)

func BenchmarkDecodeJSON(b *testing.B) {
	raw, _ := os.ReadFile(boom402)
	c := &Codec{Schemas: NewSchemas()}
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
	c := &Codec{Schemas: NewSchemas()}
	as, _ := c.Decode(raw)
	for i := 0; i < b.N; i++ {
		if _, err := parseLenient(as[0].SchemaText); err != nil {
			b.Fatal(err)
		}
	}
}
