package main

import (
	"context"
	"errors"
)

type runcCmd struct{}

func (c *runcCmd) Run(ctx context.Context) error { return errors.New("boxtap runc: not implemented yet") }
