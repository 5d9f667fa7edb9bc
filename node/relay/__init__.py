"""Relays: the middle of a hierarchical federation (a server, relays, sites under them).

A relay is a server to its sites (they connect to it with their own kits, unchanged) and a site to its parent (the
server or another relay). It passes each task down to its sites and sends one result up: their weighted mean, whose
weight is the sum of theirs, so the server's FedAvg over relays equals FedAvg over every site (`combine`).
"""
