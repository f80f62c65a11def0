package packager

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// SchemaHandler serves the 4.02 schema as a Confluent schema registry does,
// for consumers of FormatConfluent topics:
//
//	GET .../schemas/ids/<id>         {"schema": "<schema JSON as a string>"}
//	GET .../schemas/ids/<id>/schema  the schema JSON itself
//
// An unknown id answers 404 with {"error_code": 40403, ...}. The handler
// matches on the path suffix, so it can be mounted under any prefix.
func (p *Packager) SchemaHandler() http.Handler {
	return SchemaHandler(p.cfg.SchemaID, p.schema)
}

// SchemaHandler serves schema s under id.
func SchemaHandler(id int32, s *Schema) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
			_ = json.NewEncoder(w).Encode(map[string]any{"error_code": 405, "message": "Method not allowed"})
			return
		}
		i := strings.LastIndex(r.URL.Path, "/schemas/ids/")
		rest := ""
		if i >= 0 {
			rest = r.URL.Path[i+len("/schemas/ids/"):]
		}
		idText, raw := strings.CutSuffix(rest, "/schema")
		got, err := strconv.ParseInt(idText, 10, 32)
		if i < 0 || err != nil || int32(got) != id {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]any{"error_code": 40403, "message": "Schema " + idText + " not found"})
			return
		}
		if raw {
			_, _ = w.Write(s.Text)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"schema": string(s.Text)})
	})
}
