-- Removes one entry (ARGV[1]) from the store; 1 if it was there.
return drop(ARGV[1])
