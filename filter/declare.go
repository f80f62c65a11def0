package filter

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Declared is a filter written in serve's configuration (the top-level
// `filters:` list) rather than saved with `filter add` or the API: the
// runner stores it at start, as `filter add` would, when it is missing or
// differs from what is stored, and removes the declared filters that the
// configuration no longer lists. A filter the runner paused stays paused
// across restarts until its declaration changes.
type Declared struct {
	Name       string `yaml:"name"`
	Owner      string `yaml:"owner"` // empty: ANONYMOUS
	Topics     string `yaml:"topics"`
	Expression string `yaml:"expression"`
	Format     string `yaml:"format"` // alert (default) or summary
	Start      string `yaml:"start"`  // now (default) or earliest
}

// Spec is the filter d declares.
func (d Declared) Spec() Spec {
	owner := d.Owner
	if owner == "" {
		owner = "ANONYMOUS"
	}
	return Spec{Name: d.Name, Owner: owner, Topics: d.Topics, Expression: d.Expression, Format: d.Format,
		Start: d.Start, Declared: true}
}

// checkDeclared names every problem of the declared filters: each is
// checked and compiled as a save would, and names are unique.
func checkDeclared(ds []Declared, c *Compiler) error {
	var errs []error
	seen := map[string]bool{}
	for i, d := range ds {
		if err := d.Spec().Validate(c); err != nil {
			errs = append(errs, fmt.Errorf("filters[%d] (%s): %w", i, d.Name, err))
		}
		if seen[d.Name] {
			errs = append(errs, fmt.Errorf("filters[%d]: a second filter named %q", i, d.Name))
		}
		seen[d.Name] = true
	}
	return errors.Join(errs...)
}

// sameDeclaration tells whether stored is what d declares (the runner's
// state of it aside).
func sameDeclaration(stored Spec, d Declared) bool {
	want := d.Spec()
	return stored.Declared && stored.Owner == want.Owner && stored.Topics == want.Topics &&
		stored.Expression == want.Expression && stored.Format == want.Format && stored.Start == want.Start
}

// declare stores the configuration's filters that stored lacks or holds
// otherwise, and removes the declared ones it no longer lists.
func (r *Runner) declare(ctx context.Context, stored map[string]Spec) error {
	var cl *kgo.Client
	client := func() (*kgo.Client, error) {
		if cl != nil {
			return cl, nil
		}
		var err error
		cl, err = kgo.NewClient(r.opts...)
		return cl, err
	}
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	listed := map[string]bool{}
	for _, d := range r.cfg.Declared {
		listed[d.Name] = true
		if s, ok := stored[d.Name]; ok && sameDeclaration(s, d) {
			continue
		}
		c, err := client()
		if err == nil {
			err = Save(ctx, c, r.cfg.SpecTopic, r.compiler, d.Spec())
		}
		if err != nil {
			return fmt.Errorf("filter: store %s from the configuration: %w", d.Name, err)
		}
		r.logger.Info("filter stored from the configuration", zap.String("filter", d.Name))
	}
	for name, s := range stored {
		if !s.Declared || listed[name] {
			continue
		}
		c, err := client()
		if err == nil {
			err = Remove(ctx, c, r.cfg.SpecTopic, name)
		}
		if err != nil {
			return fmt.Errorf("filter: remove %s, no longer in the configuration: %w", name, err)
		}
		r.logger.Info("filter removed: no longer in the configuration", zap.String("filter", name))
	}
	return nil
}
