package alertindex

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztfbroker/ztfbroker/alertcat"
	"github.com/ztfbroker/ztfbroker/avrofile"
)

// samples are the shared real ZTF alerts beside the project root.
const samples = "../../shared/data/ztf/alerts"

func sampleFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(samples, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".avro") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 30 {
		t.Fatalf("%d sample alerts under %s", len(files), samples)
	}
	return files
}

// TestDecodeSamples reads every real sample alert's summary and checks it
// against the whole alert as alertcat decodes it to JSON.
func TestDecodeSamples(t *testing.T) {
	dec := Decoder{Schemas: avrofile.NewSchemas(0)}
	codec := &alertcat.Codec{Schemas: avrofile.NewSchemas(0)}
	decoded := 0
	for _, f := range sampleFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := dec.Decode(b)
		as, jerr := codec.Decode(b)
		if jerr != nil {
			t.Fatalf("%s: alertcat: %v", f, jerr)
		}
		js, jerr := codec.AppendJSON(nil, as[0])
		if jerr != nil {
			t.Fatalf("%s: %v", f, jerr)
		}
		var whole struct {
			ObjectID  *string        `json:"objectId"`
			Candid    *int64         `json:"candid"`
			Candidate map[string]any `json:"candidate"`
		}
		if err := json.Unmarshal(js, &whole); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Logf("%s: %v", filepath.Base(f), err)
			continue
		}
		decoded++
		num := func(k string) float64 {
			v, _ := whole.Candidate[k].(float64)
			return v
		}
		if whole.ObjectID != nil && *whole.ObjectID != s.ObjectID {
			t.Errorf("%s: objectId %q, want %q", f, s.ObjectID, *whole.ObjectID)
		}
		if whole.Candid != nil && *whole.Candid != s.Candid {
			t.Errorf("%s: candid %d, want %d", f, s.Candid, *whole.Candid)
		}
		if s.JD != num("jd") || s.RA != num("ra") || s.Dec != num("dec") || float64(s.Fid) != num("fid") ||
			math.Abs(float64(s.MagPSF)-num("magpsf")) > 1e-5 || float64(s.ProgramID) != num("programid") {
			t.Errorf("%s: summary %+v, candidate jd %v ra %v dec %v fid %v magpsf %v programid %v", f, s,
				num("jd"), num("ra"), num("dec"), num("fid"), num("magpsf"), num("programid"))
		}
		if isd, _ := whole.Candidate["isdiffpos"].(string); isd != s.IsDiffPos {
			t.Errorf("%s: isdiffpos %q, want %q", f, s.IsDiffPos, isd)
		}
	}
	if decoded < 29 {
		t.Errorf("%d sample alerts decoded, want every alert with a position (29 or more)", decoded)
	}
}
