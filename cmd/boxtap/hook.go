package main

import (
	"context"
	"errors"
)

type hookCmd struct{}

func (c *hookCmd) Run(ctx context.Context) error { return errors.New("boxtap hook: not implemented yet") }

type hookTracerCmd struct{}

func (c *hookTracerCmd) Run(ctx context.Context) error { return errors.New("not implemented yet") }
