package packager

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Route is one path of the schema registry: a Go 1.22 ServeMux pattern,
// its handler, and a title for a page index (empty: not listed). It has
// the fields of web.Route, so the wiring converts one into the other.
type Route struct {
	Pattern string
	Handler http.Handler
	Title   string
}

// SchemaRoutes serve the 4.02 schema as a Confluent schema registry does,
// for consumers of FormatConfluent topics:
//
//	GET /schemas/ids/{id}         {"schema": "<schema JSON as a string>"}
//	GET /schemas/ids/{id}/schema  the schema JSON itself
//
// An unknown id answers 404 with {"error_code": 40403, ...}.
func (p *Packager) SchemaRoutes() []Route {
	return SchemaRoutes(p.cfg.SchemaID, p.schema)
}

// SchemaHandler is SchemaRoutes on a ServeMux of their own, for serving
// the schema alone (`ztfbroker package --schema-addr`, tests).
func (p *Packager) SchemaHandler() http.Handler {
	return SchemaHandler(p.cfg.SchemaID, p.schema)
}

// SchemaRoutes serve schema s under id.
func SchemaRoutes(id int32, s *Schema) []Route {
	serve := func(raw bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			idText := r.PathValue("id")
			got, err := strconv.ParseInt(idText, 10, 32)
			if err != nil || int32(got) != id {
				w.WriteHeader(http.StatusNotFound)
				_ = json.NewEncoder(w).Encode(map[string]any{"error_code": 40403, "message": "Schema " + idText + " not found"})
				return
			}
			if raw {
				_, _ = w.Write(s.Text)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"schema": string(s.Text)})
		}
	}
	return []Route{
		{Pattern: "GET /schemas/ids/{id}", Handler: serve(false), Title: "Alert schema (Confluent schema registry)"},
		{Pattern: "GET /schemas/ids/{id}/schema", Handler: serve(true)},
	}
}

// SchemaHandler serves schema s under id on a ServeMux of its own.
func SchemaHandler(id int32, s *Schema) http.Handler {
	mux := http.NewServeMux()
	for _, r := range SchemaRoutes(id, s) {
		mux.Handle(r.Pattern, r.Handler)
	}
	return mux
}
