-- After inflight_journal.lua: journal the message alone (it is published afterwards, some other way).
journal()
return 1
