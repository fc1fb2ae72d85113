<?php
// Runs calls of the official Pusher PHP SDK (pusher/pusher-php-server
// 7.2.7, unmodified, in ../shared/third_party) against Herald, for the
// end-to-end tests. One JSON argument:
//   {"app": {"id", "key", "secret"}, "options": {...}, "calls": [{"call": "trigger", "args": [...]}, ...]}
// Prints one JSON array: per call {"result": ...} or {"error": "...", "status": N}.
// A call named "webhook" answers the events and time of Pusher::webhook().

require __DIR__ . '/autoload.php';

$input = json_decode($argv[1] ?? '', true, 512, JSON_THROW_ON_ERROR);
$app = $input['app'];
$pusher = new Pusher\Pusher($app['key'], $app['secret'], $app['id'], $input['options'] ?? []);

$out = [];
foreach ($input['calls'] as $call) {
    $name = $call['call'];
    $args = $call['args'] ?? [];
    try {
        $result = $pusher->$name(...$args);
        if ($result instanceof Pusher\Webhook) {
            $result = ['time_ms' => $result->get_time_ms(), 'events' => $result->get_events()];
        }
        $out[] = ['result' => $result];
    } catch (Pusher\ApiErrorException $e) {
        $out[] = ['error' => $e->getMessage(), 'status' => $e->getCode()];
    } catch (Throwable $e) {
        $out[] = ['error' => get_class($e) . ': ' . $e->getMessage()];
    }
}
echo json_encode($out), "\n";
