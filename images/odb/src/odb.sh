#!/bin/sh
echo "odb 2.5.0-b.23 ($(uname -m))"
