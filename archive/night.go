package archive

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Program is a ZTF programid: 1 public, 2 partnership.
type Program int

const (
	Public      Program = 1
	Partnership Program = 2
)

// Name is the word ZTF uses for the program in file names and URLs.
func (p Program) Name() string {
	switch p {
	case Public:
		return "public"
	case Partnership:
		return "partnership"
	}
	return "programid" + strconv.Itoa(int(p))
}

// ParseProgram reads a program's Name ("public", "partnership").
func ParseProgram(name string) (Program, bool) {
	for _, p := range []Program{Public, Partnership} {
		if name == p.Name() {
			return p, true
		}
	}
	return 0, false
}

// Valid reports whether the archive has a listing for the program.
func (p Program) Valid() bool { return p == Public || p == Partnership }

// Night is one UTC date, as in topic and file names (YYYYMMDD).
type Night struct{ t time.Time }

const nightLayout = "20060102"

// ParseNight reads YYYYMMDD.
func ParseNight(s string) (Night, error) {
	t, err := time.Parse(nightLayout, s)
	if err != nil || len(s) != 8 {
		return Night{}, fmt.Errorf("archive: night %q: want YYYYMMDD", s)
	}
	return Night{t}, nil
}

// NightOf is the UTC night that contains t.
func NightOf(t time.Time) Night {
	t = t.UTC()
	return Night{time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)}
}

func (n Night) String() string { return n.t.Format(nightLayout) }

// IsZero reports whether n was never set.
func (n Night) IsZero() bool { return n.t.IsZero() }

// End is the first instant after the night: 00:00 UTC of the next day.
func (n Night) End() time.Time { return n.t.AddDate(0, 0, 1) }

// AddDays is the night d days later (earlier when d < 0).
func (n Night) AddDays(d int) Night { return Night{n.t.AddDate(0, 0, d)} }

// Topic is ZTF's nightly topic name, ztf_YYYYMMDD_programidN.
func Topic(n Night, p Program) string {
	return fmt.Sprintf("ztf_%s_programid%d", n, int(p))
}

// FileName is ZTF's archive name, ztf_public_YYYYMMDD.tar.gz.
func FileName(n Night, p Program) string {
	return fmt.Sprintf("ztf_%s_%s.tar.gz", p.Name(), n)
}

var fileNameRE = regexp.MustCompile(`^ztf_(public|partnership)_([0-9]{8})\.tar\.gz$`)

// ParseFileName is the inverse of FileName.
func ParseFileName(name string) (Night, Program, error) {
	m := fileNameRE.FindStringSubmatch(name)
	if m == nil {
		return Night{}, 0, errors.New("archive: not an archive file name: " + name)
	}
	n, err := ParseNight(m[2])
	if err != nil {
		return Night{}, 0, err
	}
	p := Public
	if m[1] == "partnership" {
		p = Partnership
	}
	return n, p, nil
}
