package filter

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/parser"

	"github.com/ztfbroker/ztfbroker/packager"
)

// Bounds of an expression, part of what a filter may ask of the broker.
const (
	// MaxExpressionLen bounds the text of an expression.
	MaxExpressionLen = 4096
	// DefaultCostLimit is CEL's cost units an evaluation may spend: about
	// a hundred passes over a long history. An expression whose
	// worst case is estimated above it is refused when saved; one that
	// spends more on an alert stops there with an error.
	DefaultCostLimit = 1_000_000
	// maxHistory and maxText are the sizes the static cost estimate takes
	// for prv_candidates and fp_hists (ZTF's 30 days hold a few dozen to a
	// few hundred rows) and for strings.
	maxHistory = 2048
	maxText    = 256
	maxCutout  = 1 << 20
)

// Errors of an expression, checked with errors.Is.
var (
	ErrExpression = errors.New("filter: bad expression")
	ErrTooCostly  = errors.New("filter: expression too costly")
)

// The CEL type names of the alert's records (native Go types of the
// packager's 4.02 schema; fields are named as in the Avro schema).
var (
	candidateType    = cel.ObjectType("packager.Candidate")
	prvCandidateType = cel.ObjectType("packager.PrvCandidate")
	fpHistType       = cel.ObjectType("packager.FpHist")
	cutoutType       = cel.ObjectType("packager.Cutout")
)

// cutoutVars are the variables whose use makes the runner decode cutouts.
var cutoutVars = []string{"cutoutScience", "cutoutTemplate", "cutoutDifference"}

// newEnv is the CEL environment every filter is compiled in: the alert's
// top-level fields as variables, the source topic, and the astronomy
// helpers (see the package doc).
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeOf(&packager.Candidate{}), reflect.TypeOf(&packager.PrvCandidate{}),
			reflect.TypeOf(&packager.FpHist{}), reflect.TypeOf(&packager.Cutout{}), ext.ParseStructTag("avro")),
		ext.Strings(), ext.Math(),
		cel.Variable("objectId", cel.StringType),
		cel.Variable("candid", cel.IntType),
		cel.Variable("schemavsn", cel.StringType),
		cel.Variable("publisher", cel.StringType),
		cel.Variable("topic", cel.StringType),
		cel.Variable("candidate", candidateType),
		cel.Variable("prv_candidates", cel.ListType(prvCandidateType)),
		cel.Variable("fp_hists", cel.ListType(fpHistType)),
		cel.Variable(cutoutVars[0], cutoutType),
		cel.Variable(cutoutVars[1], cutoutType),
		cel.Variable(cutoutVars[2], cutoutType),
		cel.Function("angdist",
			cel.Overload("angdist_double4", []*cel.Type{cel.DoubleType, cel.DoubleType, cel.DoubleType, cel.DoubleType},
				cel.DoubleType, cel.FunctionBinding(func(a ...ref.Val) ref.Val {
					return types.Double(AngularDistance(float64(a[0].(types.Double)), float64(a[1].(types.Double)),
						float64(a[2].(types.Double)), float64(a[3].(types.Double))))
				}))),
		cel.Function("__ndet",
			cel.Overload("__ndet_history", []*cel.Type{candidateType, cel.ListType(prvCandidateType)}, cel.IntType,
				cel.BinaryBinding(func(c, p ref.Val) ref.Val {
					return types.Int(Detections(history(p)))
				}))),
		cel.Function("__days_since_first",
			cel.Overload("__days_since_first_history", []*cel.Type{candidateType, cel.ListType(prvCandidateType)}, cel.DoubleType,
				cel.BinaryBinding(func(c, p ref.Val) ref.Val {
					return types.Double(DaysSinceFirst(candidateOf(c), history(p)))
				}))),
		cel.Function("__mag_rate",
			cel.Overload("__mag_rate_history", []*cel.Type{candidateType, cel.ListType(prvCandidateType)}, cel.DoubleType,
				cel.BinaryBinding(func(c, p ref.Val) ref.Val {
					return types.Double(MagRate(candidateOf(c), history(p)))
				}))),
		cel.Macros(
			// cone(ra, dec, radius_arcsec): the candidate lies within radius.
			cel.GlobalMacro("cone", 3, func(eh parser.ExprHelper, _ ast.Expr, args []ast.Expr) (ast.Expr, *common.Error) {
				cand := func(f string) ast.Expr { return eh.NewSelect(eh.NewIdent("candidate"), f) }
				dist := eh.NewCall("angdist", cand("ra"), cand("dec"), args[0], args[1])
				return eh.NewCall("_<=_", dist, args[2]), nil
			}),
			historyMacro("ndet", "__ndet"),
			historyMacro("days_since_first", "__days_since_first"),
			historyMacro("mag_rate", "__mag_rate"),
		),
	)
}

// historyMacro makes name() a call of fn(candidate, prv_candidates).
func historyMacro(name, fn string) cel.Macro {
	return cel.GlobalMacro(name, 0, func(eh parser.ExprHelper, _ ast.Expr, _ []ast.Expr) (ast.Expr, *common.Error) {
		return eh.NewCall(fn, eh.NewIdent("candidate"), eh.NewIdent("prv_candidates")), nil
	})
}

func candidateOf(v ref.Val) *packager.Candidate {
	switch c := v.Value().(type) {
	case *packager.Candidate:
		return c
	case packager.Candidate:
		return &c
	}
	return &packager.Candidate{}
}

func history(v ref.Val) []packager.PrvCandidate {
	p, _ := v.Value().([]packager.PrvCandidate)
	return p
}

// AngularDistance is the great-circle distance in arcseconds between two
// positions in degrees (haversine, exact at small separations).
func AngularDistance(ra1, dec1, ra2, dec2 float64) float64 {
	const rad = math.Pi / 180
	dra, ddec := (ra2-ra1)*rad, (dec2-dec1)*rad
	h := math.Pow(math.Sin(ddec/2), 2) + math.Cos(dec1*rad)*math.Cos(dec2*rad)*math.Pow(math.Sin(dra/2), 2)
	return 2 * math.Asin(math.Min(1, math.Sqrt(h))) / rad * 3600
}

// Detections counts the alert's detections: its candidate and each
// prv_candidate with a candid (the rest are upper limits).
func Detections(prv []packager.PrvCandidate) int {
	n := 1
	for i := range prv {
		if prv[i].Candid != nil {
			n++
		}
	}
	return n
}

// DaysSinceFirst is the candidate's Julian date less the earliest of its
// detections' (0 for a first detection).
func DaysSinceFirst(c *packager.Candidate, prv []packager.PrvCandidate) float64 {
	first := c.JD
	for i := range prv {
		if prv[i].Candid != nil && prv[i].JD < first {
			first = prv[i].JD
		}
	}
	return c.JD - first
}

// MagRate is the change of magpsf per day from the latest earlier
// detection in the candidate's band to the candidate (negative: brighter);
// NaN, which no comparison holds for, when there is none.
func MagRate(c *packager.Candidate, prv []packager.PrvCandidate) float64 {
	best := -1
	for i := range prv {
		p := &prv[i]
		if p.Candid == nil || p.Magpsf == nil || p.Fid != c.Fid || !(p.JD < c.JD) {
			continue
		}
		if best < 0 || p.JD > prv[best].JD {
			best = i
		}
	}
	if best < 0 {
		return math.NaN()
	}
	p := &prv[best]
	return (float64(c.Magpsf) - float64(*p.Magpsf)) / (c.JD - p.JD)
}

// Expression is a compiled, type-checked filter expression.
type Expression struct {
	// prg counts the cost of every step and stops at the limit; fast
	// does not, and serves the alerts within the sizes the static
	// estimate assumed, for which the estimate already bounds the cost.
	prg, fast cel.Program
	// Cutouts, History and Forced say whether the expression reads a
	// cutout, prv_candidates or fp_hists: alerts are decoded without those
	// no filter reads.
	Cutouts, History, Forced bool
	// Cost is the estimated worst-case cost of an evaluation.
	Cost uint64
}

// Compiler compiles expressions in one CEL environment.
type Compiler struct {
	env       *cel.Env
	costLimit uint64
}

// NewCompiler returns a compiler whose expressions may cost at most
// costLimit (DefaultCostLimit when 0) per alert.
func NewCompiler(costLimit uint64) (*Compiler, error) {
	if costLimit == 0 {
		costLimit = DefaultCostLimit
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("filter: CEL environment: %w", err)
	}
	return &Compiler{env: env, costLimit: costLimit}, nil
}

// Compile parses and type-checks text, which must be a bool expression
// whose estimated worst-case cost is within the limit. Errors name the
// line and column.
func (c *Compiler) Compile(text string) (*Expression, error) {
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("%w: empty", ErrExpression)
	}
	if len(text) > MaxExpressionLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrExpression, len(text), MaxExpressionLen)
	}
	checked, iss := c.env.Compile(text)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%w: %v", ErrExpression, iss.Err())
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("%w: it gives %s, want bool (true selects the alert)", ErrExpression, checked.OutputType())
	}
	est, err := c.env.EstimateCost(checked, sizes{})
	if err != nil {
		return nil, fmt.Errorf("%w: cost: %v", ErrExpression, err)
	}
	if est.Max > c.costLimit {
		return nil, fmt.Errorf("%w: its worst case costs %d, the limit is %d (with %d history rows): nested loops over prv_candidates or fp_hists?",
			ErrTooCostly, est.Max, c.costLimit, maxHistory)
	}
	prg, err := c.env.Program(checked, cel.CostLimit(c.costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrExpression, err)
	}
	fast, err := c.env.Program(checked, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrExpression, err)
	}
	e := &Expression{prg: prg, fast: fast, Cost: est.Max}
	for _, r := range checked.NativeRep().ReferenceMap() {
		switch r.Name {
		case cutoutVars[0], cutoutVars[1], cutoutVars[2]:
			e.Cutouts = true
		case "prv_candidates":
			e.History = true
		case "fp_hists":
			e.Forced = true
		}
	}
	return e, nil
}

// Eval tells whether the alert matches. It is safe for concurrent use.
func (e *Expression) Eval(a *Alert) (bool, error) {
	prg := e.fast
	if !a.withinEstimate() {
		prg = e.prg
	}
	out, _, err := prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("filter: expression gave %v, not a bool", out)
	}
	return bool(b), nil
}

// withinEstimate tells whether the alert's lists and bytes are within the
// sizes the static cost estimate took (strings only cost linearly).
func (a *Alert) withinEstimate() bool {
	return len(a.Prv) <= maxHistory && len(a.Fp) <= maxHistory && len(a.Cutouts[0].StampData) <= maxCutout &&
		len(a.Cutouts[1].StampData) <= maxCutout && len(a.Cutouts[2].StampData) <= maxCutout
}

// sizes is the static cost estimate's idea of the alert: histories of at
// most maxHistory rows, strings of maxText bytes, cutouts of 1 MiB.
type sizes struct{}

func (sizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	p := n.Path()
	if len(p) == 0 {
		return nil
	}
	switch {
	case p[0] == "prv_candidates" || p[0] == "fp_hists":
		if len(p) == 1 {
			return &cost.SizeEstimate{Min: 0, Max: maxHistory}
		}
	case len(p) == 2 && p[1] == "stampData":
		return &cost.SizeEstimate{Min: 0, Max: maxCutout}
	}
	if n.Type() != nil && (n.Type().IsExactType(cel.StringType) || n.Type().IsExactType(cel.BytesType)) {
		return &cost.SizeEstimate{Min: 0, Max: maxText}
	}
	return nil
}

func (sizes) EstimateCallCost(function, _ string, _ *cost.AstNode, _ []cost.AstNode) *cost.CallEstimate {
	if strings.HasPrefix(function, "__") { // the history helpers read every row once
		return &cost.CallEstimate{CostEstimate: cost.CostEstimate{Min: 1, Max: maxHistory}}
	}
	return nil
}
