#!/usr/bin/env -S node --
import '../dist/cli/main.js';
