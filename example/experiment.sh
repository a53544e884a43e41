#!/bin/sh
# A hook for `herd run` (see the README): prints what herd hands it, then stands in
# for an experiment for a second.
echo "hook: $HERD_NODE_COUNT nodes on $HERD_MANAGERS, generations $HERD_GENERATIONS"
python3 -c 'import json,os; n=json.load(open(os.environ["HERD_NODES_FILE"])); print("first:", n[0], "last:", n[-1])'
sleep 1
